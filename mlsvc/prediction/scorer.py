"""Real-time scoring: records → typed columns → the compiled model (or the pipeline) → predictions with warnings."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsvc.prediction.compiled import CompiledModel, NotCompilable, as_objects, compile_pipeline
from mlsvc.prediction.labels import binary_label
from mlsvc.prediction.records import RecordParser
from mlsvc.resources import Attribute, ModelType
from mlsvc.training.loop import predict_output

log = logging.getLogger("mlsvc.scorer")


@dataclass(frozen=True)
class ModelCard:
    """What scoring needs to know about a model, besides its pipeline."""

    model_id: str
    version: int
    model_type: ModelType
    features: list[Attribute]
    classes: list[str] | None
    score_threshold: float | None
    levels: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_resource(cls, model: Mapping[str, Any]) -> ModelCard:
        return cls(
            model["id"],
            int(model["version"]),
            ModelType(model["model_type"]),
            [Attribute.model_validate(a) for a in model["features"]],
            model.get("classes"),
            model.get("score_threshold"),
            model.get("levels") or {},
        )


class Scorer:
    """Scores records with one model: through its compiled form when it has one, else the pipeline itself."""

    def __init__(self, card: ModelCard, pipeline: Any) -> None:
        self.card = card
        self.pipeline = pipeline
        self.parser = RecordParser(card.features, card.levels)
        self.n_classes = len(card.classes or [])
        self.compiled: CompiledModel | None
        try:
            self.compiled = compile_pipeline(pipeline, card.model_type, self.n_classes, self.parser.names)
            self.fallback_reason: str | None = None
        except NotCompilable as exc:
            self.compiled = None
            self.fallback_reason = str(exc)
            log.warning("model %s is scored by its pipeline: %s", card.model_id, exc)

    @property
    def path(self) -> str:
        return "compiled" if self.compiled is not None else "pipeline"

    def outputs(self, columns: Mapping[str, Any], n_rows: int) -> np.ndarray:
        """P(positive), class probabilities or values for typed columns."""
        if self.compiled is not None:
            return self.compiled.predict(columns, n_rows)
        frame = pd.DataFrame({name: as_objects(columns[name]) for name in self.parser.names})
        return predict_output(self.pipeline, self.card.model_type, frame, self.n_classes)

    def predict(
        self, records: Sequence[Mapping[str, Any]], score_threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """One prediction per record, in order, as plain dicts ready for JSON."""
        columns, warnings = self.parser.parse(records)
        output = self.outputs(columns, len(records))
        if self.card.model_type == ModelType.REGRESSION:
            return [{"predicted_value": float(v), "warnings": w} for v, w in zip(output, warnings, strict=True)]
        classes = self.card.classes or []
        if self.card.model_type == ModelType.BINARY:
            negative, positive = classes
            return [
                {
                    "predicted_label": binary_label(p, classes, score_threshold),
                    "predicted_scores": {negative: 1.0 - p, positive: p},
                    "warnings": w,
                }
                for p, w in zip(output.tolist(), warnings, strict=True)
            ]
        return [
            {
                "predicted_label": classes[int(np.argmax(row))],
                "predicted_scores": dict(zip(classes, map(float, row), strict=True)),
                "warnings": w,
            }
            for row, w in zip(output, warnings, strict=True)
        ]


@dataclass
class RecommenderScorer:
    """A loaded RECOMMENDATION model: the fitted recommender answers users and items itself."""

    model: Any
    path: str = "recommender"

    def answer(
        self, user_id: object | None, item_id: object | None, k: int | None, exclude_seen: bool
    ) -> dict[str, Any]:
        """Items for ``user_id``, or items like ``item_id``: the answer's user or item, its recommendations
        and whether it was a cold start."""
        if user_id is not None:
            found = self.model.recommend(str(user_id), k, exclude_seen)
            key: dict[str, Any] = {"user_id": str(user_id)}
        else:
            found = self.model.similar_items(str(item_id), k)
            key = {"item_id": str(item_id)}
        return {**key, "recommendations": found["items"], "cold_start": bool(found.get("cold_start"))}


class ScorerCache:
    """A bounded LRU of loaded scorers per model id, shared by the threads of one process."""

    def __init__(self, load: Callable[[Mapping[str, Any]], Any], capacity: int = 16) -> None:
        self._load = load
        self._capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._items

    def get(self, model: Mapping[str, Any]) -> Any:
        key = model["id"]
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per model even when many requests arrive together
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                scorer = self._load(model)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._items[key] = scorer
                self._items.move_to_end(key)
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
        return scorer
