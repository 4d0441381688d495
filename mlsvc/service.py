"""The operations of the API, independent of HTTP: create, read, list, update and delete resources, and predict."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from mlsvc.objects import RoutingObjectStore
from mlsvc.prediction.scorer import ModelCard, RecommenderScorer, Scorer, ScorerCache
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.resources import (
    BatchPrediction,
    BatchPredictionCreate,
    BatchPredictionUpdate,
    DataSource,
    DataSourceCreate,
    DataSourceUpdate,
    Evaluation,
    EvaluationCreate,
    EvaluationUpdate,
    Model,
    ModelCreate,
    ModelType,
    ModelUpdate,
    PredictRequest,
    Schema,
    Status,
    is_valid_alias,
)
from mlsvc.training.recipe import default_recipe, merge_recipe

MAX_VERSION = 2**31 - 1
PREFIX = {"datasource": "ds", "model": "ml", "evaluation": "ev", "batch_prediction": "bp"}


def new_id(kind: str) -> str:
    return f"{PREFIX[kind]}-{secrets.token_hex(6)}"


def request_hash(body: Mapping[str, Any]) -> str:
    """Identifies a create request's parameters, so a retry with the same id can be told from a conflict."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def parse_tag_filter(tag: str | None) -> tuple[str, str | None] | None:
    if not tag:
        return None
    key, sep, value = tag.partition("=")
    return key, (value if sep else None)


class Service:
    """mlsvc's operations over the metadata store, the object storage and the model registry."""

    def __init__(self, settings: Settings, store: SqlMetadataStore | None = None) -> None:
        self.settings = settings
        self.store = store or SqlMetadataStore(settings.database_url)
        self.storage = RoutingObjectStore(settings.local_roots)
        self.registry = MlflowRegistry(settings)
        self.scorers = ScorerCache(self._load_scorer)
        self.refs = RefCache(self.resolve_model)

    # --- datasources ---

    def create_datasource(self, req: DataSourceCreate) -> tuple[DataSource, bool]:
        data_uri = self.storage.check_uri(req.data_uri)
        if req.schema_uri:
            self.storage.check_uri(req.schema_uri)
        if req.data_schema is not None:
            _check_roles(req.data_schema, req.target, req.row_id)
        body = req.model_dump(mode="json", by_alias=True, exclude={"id"})
        now = utcnow()
        record = {
            **body,
            "id": req.id or new_id("datasource"),
            "name": req.name or _name_from_uri(data_uri),
            "data_uri": data_uri,
            "status": Status.PENDING.value,
            "message": "",
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
        }
        row, created = self.store.create(
            "datasource", record, request_hash(body), req.tags, "datasource.create", self.settings.job_max_attempts
        )
        return DataSource.model_validate(row), created

    def get_datasource(self, resource_id: str) -> DataSource:
        return DataSource.model_validate(self.store.get("datasource", resource_id))

    def list_datasources(
        self, *, status: str | None, name_prefix: str | None, tag: str | None, limit: int, next_token: str | None
    ) -> tuple[list[DataSource], str | None]:
        rows, token = self.store.list(
            "datasource",
            status=status,
            name_prefix=name_prefix,
            tag=parse_tag_filter(tag),
            limit=limit,
            next_token=next_token,
        )
        return [DataSource.model_validate(r) for r in rows], token

    def update_datasource(self, resource_id: str, patch: DataSourceUpdate) -> DataSource:
        return DataSource.model_validate(self._rename_and_tag("datasource", resource_id, patch.name, patch.tags))

    def delete_datasource(self, resource_id: str) -> DataSource:
        return DataSource.model_validate(self._soft_delete("datasource", resource_id))

    def _rename_and_tag(
        self, kind: str, resource_id: str, name: str | None, tags: Mapping[str, str | None] | None
    ) -> dict[str, Any]:
        self.store.get(kind, resource_id)
        if name is not None:
            self.store.update(kind, resource_id, {"name": name})
        if tags:
            self.store.set_tags(kind, resource_id, tags)
        return self.store.get(kind, resource_id)

    def _soft_delete(self, kind: str, resource_id: str) -> dict[str, Any]:
        """DELETED stays readable; deleting again changes nothing."""
        self.store.get(kind, resource_id)
        self.store.update(kind, resource_id, {"status": Status.DELETED.value})
        return self.store.get(kind, resource_id)

    def datasource_schema(self, resource_id: str) -> Schema:
        ds = self.get_datasource(resource_id)
        if ds.data_schema is None:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"datasource '{resource_id}' is {ds.status.value}; its schema is known once it is COMPLETED",
            )
        return ds.data_schema

    # --- models ---

    def create_model(self, req: ModelCreate) -> tuple[Model, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        # A retry answers as the first time did, even if the datasource has changed since.
        existing = self.store.same_request("model", req.id, request_hash(body)) if req.id else None
        if existing is not None:
            return Model.model_validate(existing), False
        self._check_unambiguous(req)
        ds = self.store.find("datasource", req.datasource_id)
        if ds is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"datasource '{req.datasource_id}' not found", {"id": req.datasource_id}
            )
        _check_datasource_ready(ds)
        schema = Schema.model_validate(ds["schema"])
        if req.model_type == ModelType.RECOMMENDATION:
            self._check_recommendation(req, schema)
        elif req.target is not None:
            names = [a.attributeName for a in schema.attributes]
            if req.target not in names:
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR, f"target column '{req.target}' not found; columns are {names}"
                )
            schema = schema.model_copy(update={"targetAttributeName": req.target})
        if req.recipe is not None and req.model_type != ModelType.RECOMMENDATION:
            features = schema.feature_attributes()
            merge_recipe(default_recipe(features), req.recipe, features)
        now = utcnow()
        record = {
            **body,
            "id": req.id or new_id("model"),
            "status": Status.PENDING.value,
            "message": "",
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
            "version": None,
        }
        row, created = self.store.create(
            "model", record, request_hash(body), req.tags, "model.train", self.settings.job_max_attempts
        )
        return Model.model_validate(row), created

    def _check_unambiguous(self, req: ModelCreate) -> None:
        """A reference is an id or a name: one must never be taken for the other."""
        if req.id and req.id != req.name and self.store.model_name_exists(req.id):
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"'{req.id}' is the name of a model; a model's id must not be "
                "another model's name, or references to it would be ambiguous",
                {"id": req.id},
            )
        holder = self.store.find("model", req.name)
        if holder is not None and holder["name"] != req.name:
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"'{req.name}' is the id of model '{holder['name']}'; choose another name",
                {"name": req.name},
            )

    def _check_recommendation(self, req: ModelCreate, schema: Schema) -> None:
        names = [a.attributeName for a in schema.attributes]
        unknown = {role: column for role, column in (req.roles or {}).items() if column and column not in names}
        if unknown:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"roles name columns the datasource does not have: {unknown}; columns are {names}",
            )
        if req.items_datasource_id:
            items = self.store.find("datasource", req.items_datasource_id)
            if items is None:
                raise MlsvcError(
                    ErrorCode.NOT_FOUND,
                    f"items datasource '{req.items_datasource_id}' not found",
                    {"id": req.items_datasource_id},
                )
            _check_datasource_ready(items)

    def resolve_model(self, ref: str) -> dict[str, Any]:
        """A model by id, ``name:VERSION``, ``name:ALIAS`` or bare ``name`` (production, else newest COMPLETED)."""
        found = self.store.find("model", ref)
        if found is not None:
            return found
        name, _, selector = ref.partition(":")
        if selector.isascii() and selector.isdigit():
            version = int(selector)
            found = self.store.model_by_version(name, version) if version <= MAX_VERSION else None
        else:
            version = self.store.alias_version(name, selector or "production")
            if version is not None:
                found = self.store.model_by_version(name, version)
            elif not selector:
                found = self.store.latest_completed_model(name)
        if found is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, _not_found_message(ref, self.store.model_name_exists(name)), {"ref": ref}
            )
        return found

    def get_model(self, ref: str) -> Model:
        return Model.model_validate(self.resolve_model(ref))

    def list_models(
        self,
        *,
        status: str | None,
        name_prefix: str | None,
        name: str | None,
        tag: str | None,
        limit: int,
        next_token: str | None,
    ) -> tuple[list[Model], str | None]:
        rows, token = self.store.list(
            "model",
            status=status,
            name_prefix=name_prefix,
            tag=parse_tag_filter(tag),
            where={"name": name} if name else None,
            limit=limit,
            next_token=next_token,
        )
        return [Model.model_validate(r) for r in rows], token

    def update_model(self, ref: str, patch: ModelUpdate) -> Model:
        model = self.resolve_model(ref)
        if patch.score_threshold is not None:
            if model["status"] != Status.COMPLETED.value:
                raise MlsvcError(
                    ErrorCode.NOT_READY,
                    f"model '{model['id']}' is {model['status']}; set its score_threshold once it is COMPLETED",
                    {"id": model["id"]},
                )
            if model.get("model_type") != "BINARY":
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR,
                    f"score_threshold applies to BINARY models; '{model['id']}' is {model['model_type']}",
                )
            self.store.update("model", model["id"], {"score_threshold": patch.score_threshold})
            self.refs.clear()
        if patch.tags:
            self.store.set_tags("model", model["id"], patch.tags)
        return Model.model_validate(self.store.get("model", model["id"]))

    def delete_model(self, ref: str) -> Model:
        model = self.resolve_model(ref)
        for alias in self.store.delete_model(model["id"]):
            self._registry_quietly("delete_alias", model["name"], alias)
        self.refs.clear()
        return Model.model_validate(self.store.get("model", model["id"]))

    def set_alias(self, name: str, alias: str, version: int) -> Model:
        if not is_valid_alias(alias):
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"alias '{alias}' must start with a letter and hold only letters, digits, '_' and '-'",
            )
        model = self.store.model_by_version(name, version)
        if model is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"model '{name}' has no version {version}", {"name": name, "version": version}
            )
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"version {version} of '{name}' is {model['status']}; only a COMPLETED version can carry an alias",
            )
        self.warm(model)  # load the new version before requests by the alias arrive
        if not self.store.set_alias(name, alias, version, require_status=Status.COMPLETED.value):
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"version {version} of '{name}' stopped being COMPLETED (deleted?) while the alias was being set",
            )
        self.refs.clear()
        self._registry_quietly("set_alias", name, alias, version)
        return Model.model_validate(self.store.get("model", model["id"]))

    def delete_alias(self, name: str, alias: str) -> Model:
        version = self.store.alias_version(name, alias)
        if version is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"model '{name}' has no alias '{alias}'", {"name": name, "alias": alias}
            )
        self.store.delete_alias(name, alias)
        self.refs.clear()
        self._registry_quietly("delete_alias", name, alias)
        model = self.store.model_by_version(name, version)
        if model is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND,
                f"alias '{alias}' pointed at version {version} of '{name}', "
                "which no longer exists; the alias is removed",
                {"name": name, "alias": alias},
            )
        return Model.model_validate(model)

    def _registry_quietly(self, method: str, *args: Any) -> None:
        """Mirror alias changes into MLflow; the store is the source of truth, so a mirror failure is not fatal."""
        try:
            getattr(self.registry, method)(*args)
        except Exception:
            import logging

            logging.getLogger("mlsvc.service").warning("could not mirror %s%s to MLflow", method, args, exc_info=True)

    # --- evaluations ---

    def create_evaluation(self, req: EvaluationCreate) -> tuple[Evaluation, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        existing = self.store.same_request("evaluation", req.id, request_hash(body)) if req.id else None
        if existing is not None:
            return Evaluation.model_validate(existing), False
        model = self.resolve_model(req.model)
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"model '{model['id']}' is {model['status']}; only a COMPLETED model can be evaluated",
                {"id": model["id"]},
            )
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is a RECOMMENDATION model: its "
                f"evaluation on held-out interactions is '{model.get('evaluation_id')}'; evaluating on "
                "another datasource is for BINARY, MULTICLASS and REGRESSION models",
            )
        ds = self.store.find("datasource", req.datasource_id)
        if ds is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"datasource '{req.datasource_id}' not found", {"id": req.datasource_id}
            )
        _check_datasource_ready(ds)
        now = utcnow()
        record = {
            **body,
            "id": req.id or new_id("evaluation"),
            "name": req.name or f"{model['name']} v{model['version']} on {ds['name']}",
            "status": Status.PENDING.value,
            "message": "",
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
            "model_id": model["id"],
            "model_version": model["version"],
            "datasource_id": ds["id"],
            "holdout": False,
        }
        row, created = self.store.create(
            "evaluation", record, request_hash(body), req.tags, "evaluation.run", self.settings.job_max_attempts
        )
        return Evaluation.model_validate(row), created

    def get_evaluation(self, resource_id: str) -> Evaluation:
        return Evaluation.model_validate(self.store.get("evaluation", resource_id))

    def list_evaluations(
        self,
        *,
        status: str | None,
        name_prefix: str | None,
        tag: str | None,
        model_id: str | None,
        limit: int,
        next_token: str | None,
    ) -> tuple[list[Evaluation], str | None]:
        rows, token = self.store.list(
            "evaluation",
            status=status,
            name_prefix=name_prefix,
            tag=parse_tag_filter(tag),
            where={"model_id": model_id} if model_id else None,
            limit=limit,
            next_token=next_token,
        )
        return [Evaluation.model_validate(r) for r in rows], token

    def update_evaluation(self, resource_id: str, patch: EvaluationUpdate) -> Evaluation:
        return Evaluation.model_validate(self._rename_and_tag("evaluation", resource_id, patch.name, patch.tags))

    def delete_evaluation(self, resource_id: str) -> Evaluation:
        return Evaluation.model_validate(self._soft_delete("evaluation", resource_id))

    # --- batch predictions ---

    def create_batch_prediction(self, req: BatchPredictionCreate) -> tuple[BatchPrediction, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        existing = self.store.same_request("batch_prediction", req.id, request_hash(body)) if req.id else None
        if existing is not None:
            return BatchPrediction.model_validate(existing), False
        model = self.resolve_model(req.model)
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"model '{model['id']}' is {model['status']}; only a COMPLETED model can make batch predictions",
                {"id": model["id"]},
            )
        output_uri = self.storage.check_uri(req.output_uri)
        data_uri = self.storage.check_uri(req.data_uri) if req.data_uri else None
        rows_total = None
        if req.datasource_id:
            ds = self.store.find("datasource", req.datasource_id)
            if ds is None:
                raise MlsvcError(
                    ErrorCode.NOT_FOUND, f"datasource '{req.datasource_id}' not found", {"id": req.datasource_id}
                )
            _check_datasource_ready(ds)
            rows_total = ds.get("row_count")
        now = utcnow()
        rid = req.id or new_id("batch_prediction")
        record = {
            **body,
            "id": rid,
            "name": req.name or f"{model['name']} v{model['version']} batch",
            "status": Status.PENDING.value,
            "message": "",
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
            "model_id": model["id"],
            "model_version": model["version"],
            "data_uri": data_uri,
            "output_uri": output_uri,
            "rows_total": rows_total,
        }
        row, created = self.store.create(
            "batch_prediction",
            record,
            request_hash(body),
            req.tags,
            "batch_prediction.run",
            self.settings.job_max_attempts,
        )
        return BatchPrediction.model_validate(row), created

    def get_batch_prediction(self, resource_id: str) -> BatchPrediction:
        return BatchPrediction.model_validate(self.store.get("batch_prediction", resource_id))

    def list_batch_predictions(
        self,
        *,
        status: str | None,
        name_prefix: str | None,
        tag: str | None,
        model_id: str | None,
        limit: int,
        next_token: str | None,
    ) -> tuple[list[BatchPrediction], str | None]:
        rows, token = self.store.list(
            "batch_prediction",
            status=status,
            name_prefix=name_prefix,
            tag=parse_tag_filter(tag),
            where={"model_id": model_id} if model_id else None,
            limit=limit,
            next_token=next_token,
        )
        return [BatchPrediction.model_validate(r) for r in rows], token

    def update_batch_prediction(self, resource_id: str, patch: BatchPredictionUpdate) -> BatchPrediction:
        row = self._rename_and_tag("batch_prediction", resource_id, patch.name, patch.tags)
        return BatchPrediction.model_validate(row)

    def delete_batch_prediction(self, resource_id: str) -> BatchPrediction:
        return BatchPrediction.model_validate(self._soft_delete("batch_prediction", resource_id))

    # --- predictions ---

    def predict(self, ref: str, req: PredictRequest) -> dict[str, Any]:
        """Predictions as a plain dict (the shape of PredictResponse), so the hot path skips model validation."""
        model = self.refs.resolve(ref)
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"model '{model['id']}' is {model['status']}, not COMPLETED",
                {"id": model["id"], "status": model["status"]},
            )
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            return self._recommend(model, req)
        if req.record is None and req.records is None:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is {model['model_type']}: send "
                "'record' or 'records'; 'user_id' and 'item_id' are for RECOMMENDATION models",
            )
        records = [req.record] if req.record is not None else list(req.records or [])
        if not records:
            raise MlsvcError(ErrorCode.VALIDATION_ERROR, "'records' is empty; give at least one record")
        if len(records) > self.settings.max_predict_records:
            raise MlsvcError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{len(records)} records in one request; the limit is {self.settings.max_predict_records}"
                " (use a batch prediction for more)",
            )
        scorer = self.scorers.get(model)
        predictions = scorer.predict(records, model.get("score_threshold"))
        return {
            "predictions": predictions,
            "model_id": model["id"],
            "version": int(model["version"]),
            "path": scorer.path,
        }

    def _recommend(self, model: Mapping[str, Any], req: PredictRequest) -> dict[str, Any]:
        if req.user_id is None and req.item_id is None:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is RECOMMENDATION: send "
                "'user_id' (items for a user) or 'item_id' (similar items), not records",
            )
        recommender = self.scorers.get(model)
        assert isinstance(recommender, RecommenderScorer)
        if req.user_id is not None:
            answer = recommender.model.recommend(str(req.user_id), req.k, req.exclude_seen)
            key = {"user_id": str(req.user_id)}
        else:
            answer = recommender.model.similar_items(str(req.item_id), req.k)
            key = {"item_id": str(req.item_id)}
        return {
            **key,
            "recommendations": answer["items"],
            "cold_start": bool(answer.get("cold_start")),
            "model_id": model["id"],
            "version": int(model["version"]),
            "path": "recommender",
        }

    def answers_at_once(self, ref: str) -> bool:
        """Whether a predict by ``ref`` needs no I/O: the reference is resolved and its model loaded."""
        model = self.refs.peek(ref)
        return model is not None and model["id"] in self.scorers

    def warm(self, model: Mapping[str, Any]) -> None:
        """Load a COMPLETED model's scorer before its first request needs it."""
        if model["status"] == Status.COMPLETED.value and model["id"] not in self.scorers:
            self.scorers.get(model)

    def _load_scorer(self, model: Mapping[str, Any]) -> Scorer | RecommenderScorer:
        fitted = self.registry.load(model["model_uri"])
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            return RecommenderScorer(fitted)
        return Scorer(ModelCard.from_resource(model), fitted)


class RefCache:
    """Model references resolved in the last second, so a predict does not query the store every time.
    Changes made through this process are seen at once; changes made elsewhere within ``ttl_s``."""

    def __init__(self, resolve: Callable[[str], dict[str, Any]], ttl_s: float = 1.0) -> None:
        self._resolve = resolve
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def resolve(self, ref: str) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._items.get(ref)
        if hit is not None and hit[0] > now:
            return hit[1]
        model = self._resolve(ref)
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[ref] = (now + self.ttl_s, model)
        return model

    def peek(self, ref: str) -> dict[str, Any] | None:
        """The resolved model if it is still fresh, without resolving it."""
        hit = self._items.get(ref)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def clear(self) -> None:
        self._items.clear()


def _check_roles(schema: Schema, target: str | None, row_id: str | None) -> None:
    names = [a.attributeName for a in schema.attributes]
    for role, name in (("target", target), ("row_id", row_id)):
        if name is not None and name not in names:
            raise MlsvcError(ErrorCode.VALIDATION_ERROR, f"{role} column '{name}' not found; columns are {names}")


def _check_datasource_ready(ds: Mapping[str, Any]) -> None:
    status = ds["status"]
    if status == Status.COMPLETED.value:
        return
    hint = {
        "PENDING": "wait until it is COMPLETED",
        "INPROGRESS": "wait until it is COMPLETED",
        "FAILED": f"it failed: {ds.get('message', '')}",
        "DELETED": "it was deleted",
    }[status]
    raise MlsvcError(
        ErrorCode.NOT_READY, f"datasource '{ds['id']}' is {status}; {hint}", {"id": ds["id"], "status": status}
    )


def _not_found_message(ref: str, name_exists: bool) -> str:
    if name_exists:
        return (
            f"model '{ref}' not found: the name exists but no COMPLETED version or alias matches "
            "(use name, name:VERSION or name:ALIAS)"
        )
    return f"model '{ref}' not found"


def _name_from_uri(uri: str) -> str:
    return (PurePosixPath(uri.rstrip("/")).name or uri)[:256]
