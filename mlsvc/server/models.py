"""/v1/models: train, read, list, update and delete models, move aliases, and predict."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import Response as RawResponse
from starlette.concurrency import run_in_threadpool

from mlsvc.errors import MlsvcError
from mlsvc.resources import (
    ALIAS_PATTERN,
    AliasSet,
    Model,
    ModelCreate,
    ModelPage,
    ModelUpdate,
    PredictRequest,
    PredictResponse,
)
from mlsvc.server.deps import Limit, NamePrefix, NextToken, ServiceDep, StatusFilter, TagFilter
from mlsvc.server.responses import errors, retried
from mlsvc.service import ListQuery

router = APIRouter(prefix="/v1/models", tags=["models"])
INLINE_BYTES = 16 * 1024
# The aliases the service takes (resources.is_valid_alias), so that the description promises no more than that.
Alias = Annotated[str, Path(pattern=ALIAS_PATTERN, description="A letter, then letters, digits, '_' or '-'.")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Model,
    responses={**retried(Model), **errors(404, 409, 413)},
)
def create_model(body: ModelCreate, service: ServiceDep, response: Response) -> Model:
    """Train a new version of the model ``name`` on a COMPLETED datasource."""
    model, created = service.models.create(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return model


@router.get("", response_model=ModelPage)
def list_models(
    service: ServiceDep,
    limit: Limit = 100,
    next_token: NextToken = None,
    status: StatusFilter = None,
    name_prefix: NamePrefix = None,
    name: str | None = Query(None, max_length=64),
    tag: TagFilter = None,
) -> ModelPage:
    # Written out rather than through list_query: ``name`` sits among the common filters in the API's order.
    query = ListQuery(status=status, name_prefix=name_prefix, tag=tag, limit=limit, next_token=next_token)
    items, token = service.models.list(query, name)
    return ModelPage(items=items, next_token=token)


@router.get("/{ref}", response_model=Model, responses=errors(404))
def get_model(ref: str, service: ServiceDep) -> Model:
    """A model by id, ``name:VERSION``, ``name:ALIAS`` or ``name``."""
    return service.models.get(ref)


@router.patch("/{ref}", response_model=Model, responses=errors(404, 409, 413))
def update_model(ref: str, body: ModelUpdate, service: ServiceDep) -> Model:
    return service.models.update(ref, body)


@router.delete("/{ref}", response_model=Model, responses=errors(404))
def delete_model(ref: str, service: ServiceDep) -> Model:
    return service.models.delete(ref)


@router.put("/{name}/aliases/{alias}", response_model=Model, responses=errors(404, 409, 413))
def set_alias(name: str, alias: Alias, body: AliasSet, service: ServiceDep) -> Model:
    """Point ``alias`` (e.g. ``production``) at a COMPLETED version of ``name``."""
    return service.models.set_alias(name, alias, body.version)


@router.delete("/{name}/aliases/{alias}", response_model=Model, responses=errors(404))
def delete_alias(name: str, alias: Alias, service: ServiceDep) -> Model:
    """Remove ``alias`` from ``name``; predictions by ``name:alias`` then answer 404."""
    return service.models.delete_alias(name, alias)


@router.post("/{ref}/predict", response_model=PredictResponse, responses=errors(404, 409, 413))
async def predict(ref: str, body: PredictRequest, service: ServiceDep, request: Request) -> RawResponse:
    """Real-time predictions for one record or a list, in order; the answer says which version gave them."""
    metrics = request.app.state.metrics
    started = time.perf_counter()
    try:
        small = int(request.headers.get("content-length") or INLINE_BYTES + 1) <= INLINE_BYTES
        # Scoring a loaded model takes a fraction of a millisecond: cheaper here than a thread hand-off. Loading a
        # model or reading the store would block the event loop, so that goes to a thread.
        outcome = service.predictions.predict_if_loaded(ref, body) if small else None
        if outcome is None:
            outcome = await run_in_threadpool(service.predictions.predict, ref, body)
    except MlsvcError as exc:
        # Labelled by the model the reference found: a label per caller-made ref would grow without bound.
        metrics.predict_errors.labels(str(exc.details.get("id", "unknown")), exc.code.value).inc()
        raise
    metrics.observe_prediction(outcome, time.perf_counter() - started)
    return RawResponse(orjson.dumps(outcome.answer), media_type="application/json")
