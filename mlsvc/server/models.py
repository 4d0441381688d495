"""/v1/models: train, read, list, update and delete models, move aliases, and predict."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import Response as RawResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
from mlsvc.server.deps import Limit, NamePrefix, NextToken, ServiceDep, StatusFilter, TagFilter, require_api_key
from mlsvc.server.errors import mlsvc_error_response
from mlsvc.server.guards import header
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
    """A page of model versions, newest first, filtered by ``name`` (every version of one model), ``status``,
    ``name_prefix`` or ``tag``; DELETED ones only when ``status=DELETED`` asks for them. Pass ``next_token`` to get
    the next page."""
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
    """Change a version's tags (merged in; a tag set to null is removed) or, for a COMPLETED BINARY model, its
    ``score_threshold``: the score from which a record is predicted the positive label."""
    return service.models.update(ref, body)


@router.delete("/{ref}", response_model=Model, responses=errors(404, 409))
def delete_model(
    ref: str,
    service: ServiceDep,
    force: bool = Query(False, description="Also delete a version that carries aliases, removing them."),
) -> Model:
    """Delete a version (soft: it stays readable as DELETED). A version that carries aliases is refused with 409
    unless ``force`` is set; then its message names the aliases removed and what the bare name now finds."""
    return service.models.delete(ref, force)


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
    started = time.perf_counter()
    small = int(request.headers.get("content-length") or INLINE_BYTES + 1) <= INLINE_BYTES
    # Scoring a loaded model takes a fraction of a millisecond: cheaper here than a thread hand-off. Loading a
    # model or reading the store would block the event loop, so that goes to a thread.
    outcome = service.predictions.predict_if_loaded(ref, body) if small else None
    if outcome is None:
        outcome = await run_in_threadpool(service.predictions.predict, ref, body)
    # Errors are counted by RequestMetrics, with those refused before this function (a malformed body, a guard).
    request.app.state.metrics.observe_prediction(ref, outcome, time.perf_counter() - started)
    return RawResponse(orjson.dumps(outcome.answer), media_type="application/json")


PREDICT_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is predict)


class PredictLane:
    """ASGI: answers a predict whose body is a valid ``PredictRequest`` sent as JSON before FastAPI routes it, as
    FastAPI would (the route's path match, the routers' API-key dependency, ``predict``, its errors in the one
    shape), with the body validated by pydantic-core straight from its bytes. FastAPI's routing, handler, stdlib
    json parse, Python-side validation and dependency solving were most of a one-record predict's CPU besides
    scoring. Any other request goes on to FastAPI with its body as it came, and is answered exactly as before:
    400 for a body that is not JSON, then the 401, then the 422 with its messages. The route is declared as
    usual, so OpenAPI describes it as before."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # BodyLimit labels so every body sent as JSON, form or plain text, or with no type at all.
        if scope["type"] != "http" or header(scope, b"content-type") != b"application/json":
            await self.app(scope, receive, send)
            return
        match, found = PREDICT_ROUTE.matches(scope)
        if match != Match.FULL:
            await self.app(scope, receive, send)
            return
        messages = await _receive_body(receive)
        body = _valid_body(messages)
        if body is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        scope.update(found)  # what the router sets: the route (RequestMetrics labels by its path), path_params
        request = Request(scope, receive, send)
        try:
            # The routers' dependency, which FastAPI runs before validating: for a valid body the order changes
            # nothing.
            await require_api_key(request)
            response = await predict(scope["path_params"]["ref"], body, scope["app"].state.service, request)
        except MlsvcError as exc:
            response = mlsvc_error_response(exc)
        await response(scope, receive, send)


async def _receive_body(receive: Receive) -> list[Message]:
    """The request's messages up to the body's last part (or a disconnect)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages


def _valid_body(messages: list[Message]) -> PredictRequest | None:
    if messages[-1]["type"] != "http.request":
        return None
    try:
        return PredictRequest.model_validate_json(b"".join(m.get("body", b"") for m in messages))
    except ValidationError:
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive``, giving ``messages`` (already received) again first."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
