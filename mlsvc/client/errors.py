"""The SDK's exceptions: one class per server error code, plus connection, wait and failure errors.

    MlsvcClientError
    ├── APIConnectionError          no answer from the server (after retries)
    ├── WaitTimeoutError            wait() ran out of time
    ├── ResourceFailedError         wait() saw the resource become FAILED or DELETED
    └── MlsvcAPIError               the server answered with an error (code, message, details, status_code)
        ├── InvalidRequestError, ValidationError, UnauthenticatedError, NotFoundError, ConflictError,
        ├── NotReadyError, PayloadTooLargeError, UnsupportedUriError, PathNotAllowedError,
        └── DataNotFoundError, AccessDeniedError, InvalidDataError, InternalServerError
"""

from __future__ import annotations

from typing import Any


class MlsvcClientError(Exception):
    """Anything the SDK raises."""


class APIConnectionError(MlsvcClientError):
    pass


class WaitTimeoutError(MlsvcClientError):
    pass


class ResourceFailedError(MlsvcClientError):
    def __init__(self, message: str, resource: Any) -> None:
        super().__init__(message)
        self.resource = resource


class MlsvcAPIError(MlsvcClientError):
    code = "error"

    def __init__(self, message: str, *, status_code: int, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or self.code
        self.details = details or {}


class InvalidRequestError(MlsvcAPIError):
    code = "invalid_request"


class ValidationError(MlsvcAPIError):
    code = "validation_error"


class UnauthenticatedError(MlsvcAPIError):
    code = "unauthenticated"


class NotFoundError(MlsvcAPIError):
    code = "not_found"


class ConflictError(MlsvcAPIError):
    code = "conflict"


class NotReadyError(MlsvcAPIError):
    code = "not_ready"


class PayloadTooLargeError(MlsvcAPIError):
    code = "payload_too_large"


class UnsupportedUriError(MlsvcAPIError):
    code = "unsupported_uri"


class PathNotAllowedError(MlsvcAPIError):
    code = "path_not_allowed"


class DataNotFoundError(MlsvcAPIError):
    code = "data_not_found"


class AccessDeniedError(MlsvcAPIError):
    code = "access_denied"


class InvalidDataError(MlsvcAPIError):
    code = "invalid_data"


class InternalServerError(MlsvcAPIError):
    code = "internal"


BY_CODE: dict[str, type[MlsvcAPIError]] = {
    cls.code: cls
    for cls in (InvalidRequestError, ValidationError, UnauthenticatedError, NotFoundError, ConflictError,
                NotReadyError, PayloadTooLargeError, UnsupportedUriError, PathNotAllowedError, DataNotFoundError,
                AccessDeniedError, InvalidDataError, InternalServerError)
}
BY_STATUS: dict[int, type[MlsvcAPIError]] = {400: InvalidRequestError, 401: UnauthenticatedError,
                                             404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError,
                                             422: ValidationError}


def from_response(status_code: int, body: Any) -> MlsvcAPIError:
    """The exception for an error answer: by the server's code, else by HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code", ""))
        cls = BY_CODE.get(code) or BY_STATUS.get(status_code, MlsvcAPIError)
        return cls(str(error.get("message", "")), status_code=status_code, code=code or None,
                   details=error.get("details") or {})
    cls = InternalServerError if status_code >= 500 else BY_STATUS.get(status_code, MlsvcAPIError)
    return cls(f"HTTP {status_code}: {str(body)[:200]}", status_code=status_code)
