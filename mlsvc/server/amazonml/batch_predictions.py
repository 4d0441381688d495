"""Amazon ML's BatchPrediction operations over mlsvc's batch predictions: create, read, search, rename and
delete. Outputs are written in Amazon ML's layout (``batch-prediction/result/…`` and a manifest)."""

from __future__ import annotations

from mlsvc.resources import BatchPrediction, BatchPredictionCreate, BatchPredictionUpdate
from mlsvc.server.amazonml.common import (
    COMMON_VARIABLES,
    Answer,
    Call,
    Params,
    every,
    life,
    log_uri,
    operation,
    request_of,
)
from mlsvc.server.amazonml.describe import describe, wants_deleted
from mlsvc.server.amazonml.models import amazon_model

VARIABLES = {
    **COMMON_VARIABLES,
    "MLModelId": lambda b: b.model_id,
    "DataSourceId": lambda b: b.datasource_id,
}


@operation("CreateBatchPrediction")
def create(call: Call, params: Params) -> Answer:
    amazon_model(call, params["MLModelId"])  # by id: a name or an alias is not an MLModelId
    request = request_of(
        BatchPredictionCreate,
        {
            "id": params["BatchPredictionId"],
            "name": params.get("BatchPredictionName"),
            "model": params["MLModelId"],
            "datasource_id": params["BatchPredictionDataSourceId"],
            "output_uri": params["OutputUri"],
            "wait_for_inputs": True,  # queued behind its model and datasource, as Amazon ML queued it
        },
    )
    call.service.batch_predictions.create(request)
    return {"BatchPredictionId": params["BatchPredictionId"]}


def shape(bp: BatchPrediction, data_uri: str | None) -> Answer:
    """A batch prediction as Amazon ML's; its record counts once it has them."""
    # Amazon ML's TotalRecordCount is the records the job saw: those it scored and those it could not read.
    settled = bp.status.value in ("COMPLETED", "FAILED")
    return {
        "BatchPredictionId": bp.id,
        "MLModelId": bp.model_id,
        "BatchPredictionDataSourceId": bp.datasource_id,
        "InputDataLocationS3": data_uri or bp.data_uri,
        "Name": bp.name,
        "OutputUri": bp.output_uri,
        "TotalRecordCount": bp.rows_scored + bp.invalid_row_count if settled else None,
        "InvalidRecordCount": bp.invalid_row_count if settled else None,
        **life(bp),
    }


@operation("GetBatchPrediction")
def get(call: Call, params: Params) -> Answer:
    bp = call.service.batch_predictions.get(params["BatchPredictionId"])
    uri = call.service.datasources.get(bp.datasource_id).data_uri if bp.datasource_id else None
    return {**shape(bp, uri), "LogUri": log_uri(call, f"/v1/batch-predictions/{bp.id}")}


@operation("DescribeBatchPredictions")
def search(call: Call, params: Params) -> Answer:
    items = list(every(call.service.batch_predictions.list, "DELETED" if wants_deleted(params) else None))
    uris = {d.id: d.data_uri for d in every(call.service.datasources.list)}
    variables = {**VARIABLES, "DataURI": lambda b: uris.get(b.datasource_id or "") or b.data_uri}
    page, token = describe(items, params, variables, key=lambda b: b.id)
    return {"Results": [shape(b, uris.get(b.datasource_id or "")) for b in page], "NextToken": token}


@operation("UpdateBatchPrediction")
def update(call: Call, params: Params) -> Answer:
    patch = request_of(BatchPredictionUpdate, {"name": params["BatchPredictionName"]})
    call.service.batch_predictions.update(params["BatchPredictionId"], patch)
    return {"BatchPredictionId": params["BatchPredictionId"]}


@operation("DeleteBatchPrediction")
def delete(call: Call, params: Params) -> Answer:
    call.service.batch_predictions.delete(params["BatchPredictionId"])
    return {"BatchPredictionId": params["BatchPredictionId"]}
