"""The one place errors become HTTP responses: every failure answers ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from mlsvc.errors import HTTP_STATUS, ErrorCode, MlsvcError

log = logging.getLogger("mlsvc.server")

_STATUS_CODES = {404: ErrorCode.NOT_FOUND, 401: ErrorCode.UNAUTHENTICATED, 413: ErrorCode.PAYLOAD_TOO_LARGE}
# The keys of an OpenAPI path item that are methods (the others are its summary, parameters and so on).
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def error_response(
    code: ErrorCode, message: str, details: dict[str, Any] | None = None, status: int | None = None
) -> Response:
    body = {"error": {"code": code.value, "message": message, "details": details or {}}}
    # RFC 9110: a 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": 'Bearer realm="mlsvc"'} if code == ErrorCode.UNAUTHENTICATED else None
    return Response(
        orjson.dumps(body), status_code=status or HTTP_STATUS[code], media_type="application/json", headers=headers
    )


def mlsvc_error_response(exc: MlsvcError) -> Response:
    return error_response(exc.code, exc.message, exc.details)


def install(app: FastAPI) -> None:
    @app.exception_handler(MlsvcError)
    async def _mlsvc(_: Request, exc: MlsvcError) -> Response:
        return mlsvc_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        problems = [_describe(e) for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(
                ErrorCode.INVALID_REQUEST, "the request body is not valid JSON: " + problems[0], {"problems": problems}
            )
        return error_response(ErrorCode.VALIDATION_ERROR, "; ".join(problems), {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        response = error_response(code, str(exc.detail), status=exc.status_code)
        response.headers.update(exc.headers or {})
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:
            response.headers["Allow"] = allowed
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = request.scope.get("state", {}).get("request_id", "")
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id)
        response = error_response(
            ErrorCode.INTERNAL, f"internal error; the server log has the details under request id {request_id}"
        )
        # This answer comes from Starlette's outermost middleware, past RequestId's reach: name the id here.
        response.headers["X-Request-Id"] = request_id
        return response


def _allowed_methods(request: Request) -> str | None:
    """Every method the app documents for the request's path (RFC 9110: Allow lists all the methods the resource
    supports). Starlette's 405 names only those of the first route whose path matched, and GET and PATCH
    /v1/models/{ref} are separate routes. None for a path the description leaves out, such as /docs."""
    path = request.scope.get("path", "")
    methods = {m for pattern, ms in _documented_methods(request.app) if pattern.match(path) for m in ms}
    return ", ".join(sorted(methods)) or None


def _documented_methods(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each documented path as a regex, with its methods; made once per app, from its OpenAPI description."""
    table: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = [
            (compile_path(template)[0], frozenset(m.upper() for m in item if m.upper() in _METHODS))
            for template, item in app.openapi().get("paths", {}).items()
        ]
        app.state.allow_table = table
    return table


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}" if where else message
