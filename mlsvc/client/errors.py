"""The SDK's exceptions: one class per server error code, plus connection, wait and failure errors.

    MlsvcClientError                    anything the SDK raises
    ├── APIConnectionError              no answer from the server after every retry
    │   └── APITimeoutError             ... because the request timed out
    ├── APIResponseError                the server answered 2xx with a body the SDK cannot read
    ├── WaitTimeoutError                wait() ran out of time (.resource is the last state seen)
    ├── ResourceFailedError             wait() saw the resource become FAILED or DELETED (.resource)
    └── MlsvcAPIError                   the server answered with an error (.status_code, .code, .message,
        │                               .details, .request_id)
        ├── InvalidRequestError         400 invalid_request
        ├── UnsupportedUriError         400 unsupported_uri
        ├── UnauthenticatedError        401 unauthenticated
        ├── PathNotAllowedError         403 path_not_allowed
        ├── AccessDeniedError           403 access_denied
        ├── HostNotAllowedError         403 host_not_allowed
        ├── NotFoundError               404 not_found
        ├── DataNotFoundError           404 data_not_found
        ├── ConflictError               409 conflict
        ├── NotReadyError               409 not_ready
        ├── PayloadTooLargeError        413 payload_too_large
        ├── ValidationError             422 validation_error
        ├── InvalidDataError            422 invalid_data
        ├── RateLimitError              429 (after the retries)
        ├── InternalServerError         500 internal
        ├── ServiceUnavailableError     503 unavailable; 502, 504 (after the retries)
        └── ArtifactIntegrityError      503 artifact_integrity (a model's stored files fail their check)

The class comes from the ``code`` in the server's JSON error body (one class per code of
``mlsvc.errors.ErrorCode``); an answer without one (a proxy's page, say) is classed by its HTTP status.
"""

from __future__ import annotations

from typing import Any


class MlsvcClientError(Exception):
    """Anything the SDK raises."""


class APIConnectionError(MlsvcClientError):
    """The server could not be reached, or dropped the connection, on every attempt."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class APITimeoutError(APIConnectionError):
    """The last attempt timed out (see the client's ``timeout``)."""


class APIResponseError(MlsvcClientError):
    """A successful answer whose body is not what the API promises (a proxy in the way, or a version skew)."""


class WaitTimeoutError(MlsvcClientError):
    """``wait()`` gave up; the resource may still complete. ``.resource`` is the last state seen."""

    def __init__(self, message: str, resource: Any = None) -> None:
        super().__init__(message)
        self.resource = resource


class ResourceFailedError(MlsvcClientError):
    """``wait()`` saw the resource become FAILED (or DELETED); ``.resource.message`` says why."""

    def __init__(self, message: str, resource: Any) -> None:
        super().__init__(message)
        self.resource = resource


class MlsvcAPIError(MlsvcClientError):
    """The server answered with an error: ``status_code``, ``code``, ``message``, ``details``, ``request_id``."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or self.code
        self.details = details or {}
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.code!r}, {self.message!r})"


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


class RateLimitError(MlsvcAPIError):
    code = "rate_limited"


class ServiceUnavailableError(MlsvcAPIError):
    code = "unavailable"


class HostNotAllowedError(MlsvcAPIError):
    code = "host_not_allowed"


class ArtifactIntegrityError(MlsvcAPIError):
    code = "artifact_integrity"


BY_CODE: dict[str, type[MlsvcAPIError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        ValidationError,
        UnauthenticatedError,
        NotFoundError,
        ConflictError,
        NotReadyError,
        PayloadTooLargeError,
        UnsupportedUriError,
        PathNotAllowedError,
        DataNotFoundError,
        AccessDeniedError,
        InvalidDataError,
        HostNotAllowedError,
        InternalServerError,
        ServiceUnavailableError,
        ArtifactIntegrityError,
    )
}
BY_STATUS: dict[int, type[MlsvcAPIError]] = {
    400: InvalidRequestError,
    401: UnauthenticatedError,
    403: AccessDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    500: InternalServerError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def from_response(status_code: int, body: Any, request_id: str | None = None) -> MlsvcAPIError:
    """The exception for an error answer: by the server's code, else by HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code", ""))
        cls = BY_CODE.get(code) or _by_status(status_code)
        details = error.get("details")
        return cls(
            str(error.get("message", "")),
            status_code=status_code,
            code=code or None,
            details=details if isinstance(details, dict) else {},
            request_id=request_id,
        )
    text = str(body).strip()[:200] or "no body"
    return _by_status(status_code)(f"HTTP {status_code}: {text}", status_code=status_code, request_id=request_id)


def _by_status(status_code: int) -> type[MlsvcAPIError]:
    if status_code in BY_STATUS:
        return BY_STATUS[status_code]
    return InternalServerError if status_code >= 500 else MlsvcAPIError
