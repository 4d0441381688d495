"""Batch prediction operations: score every row of a datasource or CSV into an output URI; read, list, tag, delete."""

from __future__ import annotations

from mlsvc.metadata import MetadataStore
from mlsvc.objects import ObjectStore
from mlsvc.resources import BatchPrediction, BatchPredictionCreate, BatchPredictionUpdate
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


class BatchPredictions:
    """The operations on batch predictions."""

    def __init__(self, metadata: MetadataStore, objects: ObjectStore, refs: ModelRefs, max_attempts: int) -> None:
        self.metadata = metadata
        self.objects = objects
        self.refs = refs
        self.max_attempts = max_attempts

    def create(self, req: BatchPredictionCreate) -> tuple[BatchPrediction, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        existing = self.metadata.same_request("batch_prediction", req.id, request_hash(body)) if req.id else None
        if existing is not None:
            return BatchPrediction.model_validate(existing), False
        model = completed_model(self.refs.resolve(req.model), "make batch predictions")
        output_uri = self.objects.check_uri(req.output_uri)
        data_uri = self.objects.check_uri(req.data_uri) if req.data_uri else None
        rows_total = ready_datasource(self.metadata, req.datasource_id).get("row_count") if req.datasource_id else None
        record = pending_record(
            body,
            req.id or new_id("batch_prediction"),
            name=req.name or f"{model['name']} v{model['version']} batch",
            model_id=model["id"],
            model_version=model["version"],
            data_uri=data_uri,
            output_uri=output_uri,
            rows_total=rows_total,
        )
        row, created = self.metadata.create(
            "batch_prediction", record, request_hash(body), req.tags, "batch_prediction.run", self.max_attempts
        )
        return BatchPrediction.model_validate(row), created

    def get(self, resource_id: str) -> BatchPrediction:
        return BatchPrediction.model_validate(self.metadata.get("batch_prediction", resource_id))

    def list(self, query: ListQuery, model_id: str | None = None) -> tuple[list[BatchPrediction], str | None]:
        where = {"model_id": model_id} if model_id else None
        return list_page(self.metadata, "batch_prediction", BatchPrediction, query, where)

    def update(self, resource_id: str, patch: BatchPredictionUpdate) -> BatchPrediction:
        row = rename_and_tag(self.metadata, "batch_prediction", resource_id, patch.name, patch.tags)
        return BatchPrediction.model_validate(row)

    def delete(self, resource_id: str) -> BatchPrediction:
        return BatchPrediction.model_validate(soft_delete(self.metadata, "batch_prediction", resource_id))
