"""Real-time predictions: resolve a reference, load (and keep) the version's scorer, answer records or users."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Document, MetadataStore
from mlsvc.metadata.sql import utcnow
from mlsvc.prediction.scorer import ModelCard, RecommenderScorer, Scorer, ScorerCache
from mlsvc.registry import ArtifactRef, ModelRegistry
from mlsvc.resources import ModelType, PredictRequest, Status
from mlsvc.service.refs import ModelRefs, was_rejected

log = logging.getLogger("mlsvc.service")
WARM_EVERY_S = 2.0


@dataclass(frozen=True)
class PredictionOutcome:
    """A predict's answer (the shape of ``PredictResponse``, as plain JSON-ready values, so the hot path skips
    model validation), which version gave it, how it was scored, and how many records or users it answered."""

    answer: dict[str, Any]
    model_id: str
    version: int
    path: str
    count: int


class Predictions:
    """Scores records with loaded models; a bounded cache keeps each version's scorer."""

    def __init__(self, metadata: MetadataStore, registry: ModelRegistry, refs: ModelRefs, max_records: int) -> None:
        self.metadata = metadata
        self.registry = registry
        self.refs = refs
        self.max_records = max_records
        self.scorers = ScorerCache(self._load)

    def predict(self, ref: str, req: PredictRequest) -> PredictionOutcome:
        model = self.refs.cached(ref)
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY, _not_ready_message(model), {"id": model["id"], "status": model["status"]}
            )
        if ":" not in ref and ref != model["id"] and not model.get("aliases") and was_rejected(model):
            raise MlsvcError(ErrorCode.NOT_READY, _rejected_message(model), {"id": model["id"]})
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            return self._recommend(model, req)
        records = self._records(model, req)
        scorer = self.scorers.get(model)
        predictions = scorer.predict(records, model.get("score_threshold"))
        answer = {"predictions": predictions, "model_id": model["id"], "version": int(model["version"])}
        return PredictionOutcome(answer, model["id"], int(model["version"]), scorer.path, len(records))

    def predict_if_loaded(self, ref: str, req: PredictRequest) -> PredictionOutcome | None:
        """The answer when it needs no I/O (the reference is fresh and its model loaded), else None: a caller
        on an event loop answers at once, and hands anything else to a thread."""
        model = self.refs.peek(ref)
        if model is None or model["id"] not in self.scorers:
            return None
        return self.predict(ref, req)

    def _records(self, model: Document, req: PredictRequest) -> list[dict[str, Any]]:
        if req.record is None and req.records is None:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is {model['model_type']}: send 'record' or 'records'; 'user_id' and "
                "'item_id' are for RECOMMENDATION models",
            )
        records = [req.record] if req.record is not None else list(req.records or [])
        if not records:
            raise MlsvcError(ErrorCode.VALIDATION_ERROR, "'records' is empty; give at least one record")
        if len(records) > self.max_records:
            raise MlsvcError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{len(records)} records in one request; the limit is {self.max_records} "
                "(use a batch prediction for more)",
            )
        return records

    def _recommend(self, model: Document, req: PredictRequest) -> PredictionOutcome:
        if req.user_id is None and req.item_id is None:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is RECOMMENDATION: send 'user_id' (items for a user) or 'item_id' "
                "(similar items), not records",
            )
        recommender = self.scorers.get(model)
        assert isinstance(recommender, RecommenderScorer)
        answer = recommender.answer(req.user_id, req.item_id, req.k, req.exclude_seen)
        answer.update(model_id=model["id"], version=int(model["version"]))
        return PredictionOutcome(answer, model["id"], int(model["version"]), recommender.path, 1)

    def warm(self, model: Document) -> None:
        """Load a COMPLETED model's scorer before its first request needs it."""
        if model["status"] == Status.COMPLETED.value and model["id"] not in self.scorers:
            self.scorers.get(model)

    def warm_forever(self, every_s: float = WARM_EVERY_S) -> None:
        """Load each model that completes (in any worker) before its first prediction asks for it, so no
        request pays the load. Runs until the process ends."""
        since = utcnow()
        while True:
            time.sleep(every_s)
            try:
                since = self._warm_completed_since(since)
            except Exception:  # the warmer is an optimisation; a failed round is logged and retried
                log.warning("warming models failed", exc_info=True)

    def _warm_completed_since(self, since: Any) -> Any:
        models, _ = self.metadata.list("model", status=Status.COMPLETED.value, limit=20)
        for model in reversed([m for m in models if m["updated_at"] > since]):
            self.warm(model)
        return max([since, *(m["updated_at"] for m in models)])

    def _load(self, model: Mapping[str, Any]) -> Scorer | RecommenderScorer:
        fitted = self.registry.load(ArtifactRef.of(model))
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            return RecommenderScorer(fitted)
        return Scorer(ModelCard.from_resource(model), fitted)


def _not_ready_message(model: Document) -> str:
    """Why a model cannot predict yet, with how far it has got and what to do."""
    what = f"model '{model['id']}' ({model['name']} v{model.get('version')})"
    status = model["status"]
    if status in (Status.PENDING.value, Status.INPROGRESS.value):
        detail = f": {model['message']}" if model.get("message") else ""
        return f"{what} is {status} ({float(model.get('progress') or 0):.0%}){detail}; predict once it is COMPLETED"
    if status == Status.FAILED.value:
        return f"{what} FAILED: {model.get('message') or 'no message'}; train it again"
    return f"{what} is {status}; it cannot predict"


def _rejected_message(model: Document) -> str:
    """A bare name found only versions promotion rejected: serving one silently would hide that."""
    reason = (model.get("promotion") or {}).get("reason", "")
    return (
        f"'{model['name']}' has no production version: its newest COMPLETED version, {model['version']}, was not "
        f"promoted ({reason}); predict with '{model['name']}:{model['version']}' to use it anyway, or make it "
        f"production with PUT /v1/models/{model['name']}/aliases/production"
    )
