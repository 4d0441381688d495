"""Request dependencies: the service, authentication, and list parameters."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.service import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


def require_api_key(request: Request) -> None:
    """When MLSVC_API_KEY is set, every /v1 call must carry it (Authorization: Bearer … or X-API-Key)."""
    expected = request.app.state.service.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise MlsvcError(ErrorCode.UNAUTHENTICATED, "a valid API key is required (Authorization: Bearer KEY)")


ServiceDep = Annotated[Service, Depends(get_service)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
NextToken = Annotated[str | None, Query(max_length=512, description="From the previous page's next_token.")]
StatusFilter = Annotated[str | None, Query(pattern="^(PENDING|INPROGRESS|COMPLETED|FAILED|DELETED)$")]
NamePrefix = Annotated[str | None, Query(max_length=256)]
TagFilter = Annotated[str | None, Query(description="key or key=value", max_length=400)]
