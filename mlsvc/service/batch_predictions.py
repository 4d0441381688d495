"""Batch prediction operations: score every row of a datasource or CSV into an output URI; read, list, tag, delete."""

from __future__ import annotations

from mlsvc.metadata import MetadataStore, ResourceKind
from mlsvc.resources import BatchPrediction, BatchPredictionCreate
from mlsvc.security.uris import UriValidator
from mlsvc.service.common import Collection, new_id, pending_record, usable_datasource, usable_model
from mlsvc.service.refs import ModelRefs


class BatchPredictions(Collection[BatchPrediction]):
    """The operations on batch predictions."""

    kind: ResourceKind = "batch_prediction"
    shape = BatchPrediction

    def __init__(self, metadata: MetadataStore, uris: UriValidator, refs: ModelRefs, max_attempts: int) -> None:
        super().__init__(metadata, max_attempts)
        self.uris = uris
        self.refs = refs

    def create(self, req: BatchPredictionCreate) -> tuple[BatchPrediction, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        if (existing := self.retried(req.id, body)) is not None:
            return existing, False
        # What the request itself gets wrong is said before what the store holds.
        output_uri = self.uris.check(req.output_uri)
        data_uri = self.uris.check_readable(req.data_uri) if req.data_uri else None
        model = usable_model(self.refs.resolve(req.model), "make batch predictions", req.wait_for_inputs)
        ds = usable_datasource(self.metadata, req.datasource_id, req.wait_for_inputs) if req.datasource_id else None
        rows_total = ds.get("row_count") if ds is not None else None
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
        return self.created(record, body, req.tags, "batch_prediction.run")
