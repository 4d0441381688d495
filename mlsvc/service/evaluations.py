"""Evaluation operations: evaluate a COMPLETED model on a labelled datasource; read, list, rename, tag, delete."""

from __future__ import annotations

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import MetadataStore
from mlsvc.resources import Evaluation, EvaluationCreate, EvaluationUpdate, ModelType
from mlsvc.service.common import (
    ListQuery,
    completed_model,
    list_page,
    new_id,
    pending_record,
    ready_datasource,
    rename_and_tag,
    request_hash,
    soft_delete,
)
from mlsvc.service.refs import ModelRefs


class Evaluations:
    """The operations on evaluations."""

    def __init__(self, metadata: MetadataStore, refs: ModelRefs, max_attempts: int) -> None:
        self.metadata = metadata
        self.refs = refs
        self.max_attempts = max_attempts

    def create(self, req: EvaluationCreate) -> tuple[Evaluation, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        existing = self.metadata.same_request("evaluation", req.id, request_hash(body)) if req.id else None
        if existing is not None:
            return Evaluation.model_validate(existing), False
        model = completed_model(self.refs.resolve(req.model), "be evaluated")
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is a RECOMMENDATION model: its evaluation on held-out interactions is "
                f"'{model.get('evaluation_id')}'; evaluating on another datasource is for BINARY, MULTICLASS and "
                "REGRESSION models",
            )
        ds = ready_datasource(self.metadata, req.datasource_id)
        record = pending_record(
            body,
            req.id or new_id("evaluation"),
            name=req.name or f"{model['name']} v{model['version']} on {ds['name']}",
            model_id=model["id"],
            model_version=model["version"],
            datasource_id=ds["id"],
            holdout=False,
        )
        row, created = self.metadata.create(
            "evaluation", record, request_hash(body), req.tags, "evaluation.run", self.max_attempts
        )
        return Evaluation.model_validate(row), created

    def get(self, resource_id: str) -> Evaluation:
        return Evaluation.model_validate(self.metadata.get("evaluation", resource_id))

    def list(self, query: ListQuery, model_id: str | None = None) -> tuple[list[Evaluation], str | None]:
        where = {"model_id": model_id} if model_id else None
        return list_page(self.metadata, "evaluation", Evaluation, query, where)

    def update(self, resource_id: str, patch: EvaluationUpdate) -> Evaluation:
        row = rename_and_tag(self.metadata, "evaluation", resource_id, patch.name, patch.tags)
        return Evaluation.model_validate(row)

    def delete(self, resource_id: str) -> Evaluation:
        return Evaluation.model_validate(soft_delete(self.metadata, "evaluation", resource_id))
