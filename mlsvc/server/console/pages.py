"""Rendering a console page: the templates, what every page gets (the signed-in state, the CSRF token, the nav),
and the paging of lists."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Status
from mlsvc.security.auth import csrf_for, session_value
from mlsvc.server.console import charts
from mlsvc.server.deps import SESSION_COOKIE
from mlsvc.service import Service

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["charts"] = charts
COOKIE = SESSION_COOKIE
PAGE_SIZE = 50
LIVE = (Status.PENDING, Status.INPROGRESS)  # a resource in these is followed live by its page
T = TypeVar("T")  # rows of a list page; the next page follows the store's next_token


def api_key(request: Request) -> str | None:
    key: str | None = request.app.state.service.settings.api_key
    return key


def signed_in(request: Request) -> bool:
    """Whether the request may see the console: no key is configured, or its cookie holds the session."""
    key = api_key(request)
    if not key:
        return True
    given = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(given.encode(), session_value(key).encode())


def csrf_token(request: Request) -> str:
    """The token a page's scripts send with every change (empty when no key is configured)."""
    key = api_key(request)
    return csrf_for(session_value(key)) if key else ""


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from its template, with what the base template needs."""
    context.setdefault("title", "mlsvc")
    context.setdefault("here", here(request))
    return TEMPLATES.TemplateResponse(
        request, template, {"csrf_token": csrf_token(request), **context}, status_code=status_code
    )


def signed_in_page(request: Request) -> None:
    """A dependency of every page: without the session (when a key is set), go and sign in first."""
    if not signed_in(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(status_code=303, headers={"Location": f"/console/login?next={quote(target)}"})


def here(request: Request) -> str:
    """This page's path and query: what its live parts re-fetch."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def or_none(read: Callable[[], T]) -> T | None:
    """What ``read`` finds, or None where the service says it is not there (a page shows less rather than failing)."""
    try:
        return read()
    except MlsvcError:
        return None


@dataclass(frozen=True)
class Pager:
    """Links to the first and the next page of a list, keeping its filters."""

    first: str | None
    next: str | None

    @classmethod
    def of(cls, request: Request, filters: Mapping[str, str | None], token: str | None, after: str | None) -> Pager:
        kept = {k: v for k, v in filters.items() if v}

        def link(extra: Mapping[str, str]) -> str:
            query = urlencode({**kept, **extra})
            return request.url.path + (f"?{query}" if query else "")

        return cls(first=link({}) if token else None, next=link({"next_token": after}) if after else None)


# Where an error page sends a person back to, by the section it was shown in.
BACK = {
    "datasources": ("/console/datasources", "datasources"),
    "models": ("/console/models", "models"),
    "evaluations": ("/console/evaluations", "evaluations"),
    "batch": ("/console/batch-predictions", "batch predictions"),
    "new": ("/console/new", "new datasource form"),
}


def error_page(request: Request, exc: MlsvcError, section: str) -> HTMLResponse:
    """The service's own message on a page, with the status the API would answer (404 for an unknown id)."""
    href, name = BACK[section]
    title = "Not found" if exc.code is ErrorCode.NOT_FOUND else "Not shown"
    return render(
        request, "error.html", exc.http_status, title=title, section=section, error=exc, back_href=href, back_name=name
    )
