"""Rendering a console page: the templates, what every page gets (the signed-in state, the CSRF token, the nav),
and the paging of lists."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from mlsvc.security.auth import csrf_for, session_value
from mlsvc.server.console import charts
from mlsvc.server.deps import SESSION_COOKIE
from mlsvc.service import Service

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["charts"] = charts
COOKIE = SESSION_COOKIE
PAGE_SIZE = 50  # rows of a list page; the next page follows the store's next_token


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
    return TEMPLATES.TemplateResponse(
        request, template, {"csrf_token": csrf_token(request), **context}, status_code=status_code
    )


def signed_in_page(request: Request) -> None:
    """A dependency of every page: without the session (when a key is set), go and sign in first."""
    if not signed_in(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(status_code=303, headers={"Location": f"/console/login?next={quote(target)}"})
