"""The error answers each route documents: every status it can answer with, in the one error shape, with the
catalogue's codes for that status and an example."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mlsvc.errors import HTTP_STATUS, ErrorCode
from mlsvc.resources import ErrorBody

_EXAMPLES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_REQUEST: "the request body is not valid JSON: Expecting value",
    ErrorCode.VALIDATION_ERROR: "time_budget_s: Input should be greater than 0",
    ErrorCode.UNAUTHENTICATED: "a valid API key is required (Authorization: Bearer KEY)",
    ErrorCode.NOT_FOUND: "model 'churn:7' not found",
    ErrorCode.CONFLICT: "datasource 'ds-1' already exists with different parameters; choose another id",
    ErrorCode.NOT_READY: "datasource 'ds-1' is PENDING; wait until it is COMPLETED",
    ErrorCode.PAYLOAD_TOO_LARGE: "request body is larger than the limit of 10485760 bytes",
    ErrorCode.UNSUPPORTED_URI: "'http://h/x.csv' uses scheme 'http', which mlsvc does not read or write",
    ErrorCode.PATH_NOT_ALLOWED: "/etc/passwd is outside the local data roots mlsvc may use",
    ErrorCode.DATA_NOT_FOUND: "no object at s3://bucket/churn.csv; check the key and its case",
    ErrorCode.ACCESS_DENIED: "access to s3://bucket/churn.csv was denied (AccessDenied)",
    ErrorCode.INVALID_DATA: "s3://bucket/churn.csv has no data rows",
    ErrorCode.HOST_NOT_ALLOWED: "this service answers requests for 127.0.0.1, localhost, not for 'evil.example'",
    ErrorCode.INTERNAL: "internal error; the server log has the details under request id srv-0123456789abcdef",
    ErrorCode.UNAVAILABLE: "the server is at its limit of 64 requests in flight; retry after 1 s",
    ErrorCode.ARTIFACT_INTEGRITY: "model churn:3 (mdl-1) was not loaded: its file model.skops is not the one "
    "registered (SHA-256 differs)",
}
_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid API key (the answer carries WWW-Authenticate)",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the resource's state",
    413: "Too large",
    422: "Invalid parameters",
    500: "A bug in mlsvc",
    503: "Overloaded (the answer carries Retry-After), or a model whose stored files fail their integrity check",
}

# Every /v1 route: bad values (a NUL in an id, a foreign next_token), validation, auth, Host, load, bugs.
EVERY = (400, 401, 403, 422, 500, 503)
BY_ID = (*EVERY, 404)
WITH_BODY = (*EVERY, 413)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer with ``statuses``."""
    return {status: _response(status) for status in sorted(set(statuses))}


def _response(status: int) -> dict[str, Any]:
    codes = [code for code, code_status in HTTP_STATUS.items() if code_status == status]
    examples: dict[str, Any] = {
        code.value: {"value": {"error": {"code": code.value, "message": _EXAMPLES[code], "details": {}}}}
        for code in codes
    }
    listed = ", ".join(code.value for code in codes)
    return {
        "model": ErrorBody,
        "description": f"{_DESCRIPTIONS[status]}: {listed}",
        "content": {"application/json": {"examples": examples}},
    }


def retried(shape: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A create's 200: the resource an earlier create with the same id and parameters made (a safe retry)."""
    return {200: {"model": shape, "description": "The resource an earlier create with this id and body made"}}
