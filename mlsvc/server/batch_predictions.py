"""/v1/batch-predictions: score every row of a datasource or CSV into files under an output URI."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from mlsvc.resources import BatchPrediction, BatchPredictionCreate, BatchPredictionPage, BatchPredictionUpdate
from mlsvc.server.deps import ListQueryDep, ModelIdFilter, ServiceDep
from mlsvc.server.responses import errors, retried

router = APIRouter(prefix="/v1/batch-predictions", tags=["batch predictions"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchPrediction,
    responses={**retried(BatchPrediction), **errors(404, 409, 413)},
)
def create_batch_prediction(body: BatchPredictionCreate, service: ServiceDep, response: Response) -> BatchPrediction:
    """Predict for every row; results are gzipped CSV under ``output_uri``, with a manifest written last."""
    batch, created = service.batch_predictions.create(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return batch


@router.get("", response_model=BatchPredictionPage)
def list_batch_predictions(service: ServiceDep, query: ListQueryDep, model_id: ModelIdFilter) -> BatchPredictionPage:
    """A page of batch predictions, newest first, filtered by ``model_id``, ``status``, ``name_prefix`` or ``tag``;
    DELETED ones only when ``status=DELETED`` asks for them. Pass ``next_token`` to get the next page."""
    items, token = service.batch_predictions.list(query, model_id)
    return BatchPredictionPage(items=items, next_token=token)


@router.get("/{batch_id}", response_model=BatchPrediction, responses=errors(404))
def get_batch_prediction(batch_id: str, service: ServiceDep) -> BatchPrediction:
    """A batch prediction: its status, progress and rows scored so far; once COMPLETED, where its output files and
    manifest are, and the rows that could not be read."""
    return service.batch_predictions.get(batch_id)


@router.patch("/{batch_id}", response_model=BatchPrediction, responses=errors(404, 413))
def update_batch_prediction(batch_id: str, body: BatchPredictionUpdate, service: ServiceDep) -> BatchPrediction:
    """Rename a batch prediction or change its tags (merged in; a tag set to null is removed)."""
    return service.batch_predictions.update(batch_id, body)


@router.delete("/{batch_id}", response_model=BatchPrediction, responses=errors(404))
def delete_batch_prediction(batch_id: str, service: ServiceDep) -> BatchPrediction:
    """Delete a batch prediction (soft: it stays readable as DELETED). A running one stops within seconds and
    leaves nothing under its output URI; files of a COMPLETED one are left where they are."""
    return service.batch_predictions.delete(batch_id)
