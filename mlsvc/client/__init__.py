"""The Python SDK on httpx: Client and AsyncClient, typed results, waiters, pagination and one exception
per error code. `docs/sdk.md` is its guide.

    from mlsvc.client import Client
    with Client() as client:                     # MLSVC_URL and MLSVC_API_KEY, or arguments
        model = client.models.get("churn")
"""

from mlsvc.client._base import Page, RetryPolicy
from mlsvc.client.async_client import AsyncClient
from mlsvc.client.client import Client
from mlsvc.client.errors import (
    AccessDeniedError,
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    ConflictError,
    DataNotFoundError,
    InternalServerError,
    InvalidDataError,
    InvalidRequestError,
    MlsvcAPIError,
    MlsvcClientError,
    NotFoundError,
    NotReadyError,
    PathNotAllowedError,
    PayloadTooLargeError,
    RateLimitError,
    ResourceFailedError,
    ServiceUnavailableError,
    UnauthenticatedError,
    UnsupportedUriError,
    ValidationError,
    WaitTimeoutError,
)
from mlsvc.client.thresholds import choose_threshold
from mlsvc.resources import BatchPrediction, DataSource, Evaluation, Model, Prediction, PredictResponse, Schema

__all__ = [
    "APIConnectionError",
    "APIResponseError",
    "APITimeoutError",
    "AccessDeniedError",
    "AsyncClient",
    "BatchPrediction",
    "Client",
    "ConflictError",
    "DataNotFoundError",
    "DataSource",
    "Evaluation",
    "InternalServerError",
    "InvalidDataError",
    "InvalidRequestError",
    "MlsvcAPIError",
    "MlsvcClientError",
    "Model",
    "NotFoundError",
    "NotReadyError",
    "Page",
    "PathNotAllowedError",
    "PayloadTooLargeError",
    "PredictResponse",
    "Prediction",
    "RateLimitError",
    "ResourceFailedError",
    "RetryPolicy",
    "Schema",
    "ServiceUnavailableError",
    "UnauthenticatedError",
    "UnsupportedUriError",
    "ValidationError",
    "WaitTimeoutError",
    "choose_threshold",
]
