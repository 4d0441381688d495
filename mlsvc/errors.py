"""The closed catalogue of error codes, the one exception the core raises, and code → HTTP status."""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every error mlsvc reports; each maps to exactly one HTTP status in ``HTTP_STATUS``."""

    INVALID_REQUEST = "invalid_request"
    VALIDATION_ERROR = "validation_error"
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    NOT_READY = "not_ready"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_URI = "unsupported_uri"
    PATH_NOT_ALLOWED = "path_not_allowed"
    DATA_NOT_FOUND = "data_not_found"
    ACCESS_DENIED = "access_denied"
    INVALID_DATA = "invalid_data"
    HOST_NOT_ALLOWED = "host_not_allowed"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    ARTIFACT_INTEGRITY = "artifact_integrity"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.NOT_READY: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_URI: 400,
    ErrorCode.PATH_NOT_ALLOWED: 403,
    ErrorCode.DATA_NOT_FOUND: 404,
    ErrorCode.ACCESS_DENIED: 403,
    ErrorCode.INVALID_DATA: 422,
    ErrorCode.HOST_NOT_ALLOWED: 403,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    # The model's stored files are not the ones it was registered with: the server cannot serve it (no retry helps).
    ErrorCode.ARTIFACT_INTEGRITY: 503,
}


class MlsvcError(Exception):
    """An error a person can act on. Its message may be shown to API callers, so it never holds secrets."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # As it was raised, through pickle: a Dask task's error reaches the job that waits on it.
        return (type(self), (self.code, self.message, self.details))

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code.value, "message": self.message, "details": self.details}}


def did_you_mean(name: str, known: list[str]) -> str:
    """ " (did you mean 'x'?)" for a name close to a known one (a typo, another case), else ""."""
    by_fold = {k.casefold(): k for k in known}
    close = by_fold.get(name.casefold()) or next(iter(difflib.get_close_matches(name, known, n=1)), None)
    return f" (did you mean '{close}'?)" if close else ""
