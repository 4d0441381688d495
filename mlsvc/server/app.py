"""Building the FastAPI app over a Service: routers, the error handler, the body limit, auth, the access log and
the documentation pages."""

from __future__ import annotations

import random
import re

import orjson
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode
from mlsvc.server import amazonml, batch_predictions, console, datasources, docs, errors, evaluations, models
from mlsvc.server.access_log import AccessLog
from mlsvc.server.deps import require_api_key
from mlsvc.server.guards import HostCheck, ShedLoad, header
from mlsvc.server.metrics import Metrics, ModelLabels, RequestMetrics
from mlsvc.server.responses import EVERY
from mlsvc.server.responses import errors as error_answers
from mlsvc.service import Service


class RequestId:
    """Echoes the caller's X-Request-Id (or a new one) on every answer, so a client's call and the server's
    log lines can be matched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        # Unique, not secret: the random module's generator, which asks the kernel for nothing per request.
        request_id = given[:128] if given else f"srv-{random.getrandbits(64):016x}".encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, tagged)


class BodyLimit:
    """Refuses request bodies over the limit with 413 before the app reads them, and reads every body of the API as
    JSON (the only kind it takes), whatever type a client such as `curl -d` labels it with."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type, length = b"", None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value
            elif key == b"content-length":
                length = value
        # The console's sign-in is an HTML form: its body is what it says it is.
        relabel = not scope["path"].startswith("/console/")
        if relabel and content_type != b"application/json" and _JSON_UNLESS.match(content_type):
            kept = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*kept, (b"content-type", b"application/json")]}
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # A body of unknown length (chunked): read it here, up to the limit, and hand it on whole.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.error_response(
            ErrorCode.PAYLOAD_TOO_LARGE, f"request body is larger than the limit of {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


# A missing type, form encoding or plain text: what clients send when they were not told to say JSON.
_JSON_UNLESS = re.compile(rb"^(|application/x-www-form-urlencoded|text/plain)(;.*)?$", re.IGNORECASE)


_NOT_READY = {
    "description": "Not ready: a check failed",
    "content": {"application/json": {"example": {"status": "not_ready", "checks": {"metadata": "ok"}}}},
}


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="mlsvc",
        version="1.0",
        description="A self-hosted machine-learning prediction service: datasources, models, predictions.",
        docs_url=None,  # docs.install serves them, with their assets
        redoc_url=None,
    )
    app.state.service = service or Service(settings)
    app.state.metrics = Metrics(app.state.service.figures, ModelLabels(app.state.service.predictions.refs))
    errors.install(app)
    docs.install(app)
    console.install(app)
    amazonml.install(app, settings)
    auth = [Depends(require_api_key)]
    for router in (datasources.router, models.router, evaluations.router, batch_predictions.router):
        app.include_router(router, dependencies=auth, responses=error_answers(*EVERY))

    @app.get("/healthz", tags=["health"], responses=error_answers(403, 500))
    def healthz() -> dict[str, str]:
        """Liveness: answers 200 ``{"status": "ok"}`` while the process serves; needs no API key. For whether it
        can do its work (store, registry, models), see ``/readyz``."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], dependencies=auth, responses={**error_answers(401, 403, 500), 503: _NOT_READY})
    def readyz() -> Response:
        """Readiness: the metadata store and registry answer and every production model loads (503 if not)."""
        readiness = app.state.service.readiness()
        body = {"status": "ready" if readiness.ready else "not_ready", "checks": readiness.checks}
        return Response(orjson.dumps(body), status_code=200 if readiness.ready else 503, media_type="application/json")

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        dependencies=auth,
        responses=error_answers(401, 403, 500),
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text: requests by route, method and status; real-time predictions, their latency and errors by
        model name and version; records scored by the pipeline fallback; batch rows scored; jobs by state."""
        return PlainTextResponse(app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # Added first, so innermost: a predict meets the guards, the request id and the metrics before the lane.
    app.add_middleware(models.PredictLane)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ShedLoad, limit=settings.max_in_flight)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    if settings.access_log:
        app.add_middleware(AccessLog)
    app.add_middleware(RequestId)
    return app
