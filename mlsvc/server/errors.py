"""The one place errors become HTTP responses: every failure answers ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlsvc.errors import HTTP_STATUS, ErrorCode, MlsvcError

log = logging.getLogger("mlsvc.server")

_STATUS_CODES = {404: ErrorCode.NOT_FOUND, 401: ErrorCode.UNAUTHENTICATED, 413: ErrorCode.PAYLOAD_TOO_LARGE}


def error_response(
    code: ErrorCode, message: str, details: dict[str, Any] | None = None, status: int | None = None
) -> Response:
    body = {"error": {"code": code.value, "message": message, "details": details or {}}}
    # RFC 9110: a 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": 'Bearer realm="mlsvc"'} if code == ErrorCode.UNAUTHENTICATED else None
    return Response(
        orjson.dumps(body), status_code=status or HTTP_STATUS[code], media_type="application/json", headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(MlsvcError)
    async def _mlsvc(_: Request, exc: MlsvcError) -> Response:
        return error_response(exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        problems = [_describe(e) for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(
                ErrorCode.INVALID_REQUEST, "the request body is not valid JSON: " + problems[0], {"problems": problems}
            )
        return error_response(ErrorCode.VALIDATION_ERROR, "; ".join(problems), {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        response = error_response(code, str(exc.detail), status=exc.status_code)
        response.headers.update(exc.headers or {})  # a 405's Allow, say
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


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}" if where else message
