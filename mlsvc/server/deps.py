"""Request dependencies: the service, authentication, and list parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from mlsvc.security.auth import check_api_key, check_session
from mlsvc.service import ListQuery, Service

# Every dependency is an ``async def``: none blocks, and FastAPI runs a plain ``def`` one in its thread pool. The
# round trips for the API key and the service were the largest cost of a real-time predict besides scoring
# (about 0.4 ms of CPU; bench/README.md).


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def require_api_key(request: Request) -> None:
    """When MLSVC_API_KEY is set, every /v1 call must carry it (Authorization: Bearer … or X-API-Key)."""
    expected = request.app.state.service.settings.api_key
    if not expected:  # without a key configured every caller is let in: no header to read
        return
    authorization, x_api_key = request.headers.get("authorization"), request.headers.get("x-api-key")
    # A signed-in console calls the same API with its session cookie (and its CSRF token for a change).
    if authorization is None and x_api_key is None:
        cookie, csrf = request.cookies.get(SESSION_COOKIE), request.headers.get(CSRF_HEADER)
        if check_session(expected, cookie, request.method, csrf):
            return
    check_api_key(expected, authorization, x_api_key)


SESSION_COOKIE = "mlsvc_session"  # the console's (mlsvc.server.console.session)
CSRF_HEADER = "x-csrf-token"
ServiceDep = Annotated[Service, Depends(get_service)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
NextToken = Annotated[str | None, Query(max_length=512, description="From the previous page's next_token.")]
StatusFilter = Annotated[str | None, Query(pattern="^(PENDING|INPROGRESS|COMPLETED|FAILED|DELETED)$")]
NamePrefix = Annotated[str | None, Query(max_length=256)]
TagFilter = Annotated[str | None, Query(description="key or key=value", max_length=400)]


async def list_query(
    limit: Limit = 100,
    next_token: NextToken = None,
    status: StatusFilter = None,
    name_prefix: NamePrefix = None,
    tag: TagFilter = None,
) -> ListQuery:
    """The list filters every collection takes, as the service's query."""
    return ListQuery(status=status, name_prefix=name_prefix, tag=tag, limit=limit, next_token=next_token)


ListQueryDep = Annotated[ListQuery, Depends(list_query)]


async def model_id_filter(model_id: str | None = Query(None, max_length=64)) -> str | None:
    return model_id


ModelIdFilter = Annotated[str | None, Depends(model_id_filter)]
