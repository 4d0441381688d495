"""Signing in to the console when MLSVC_API_KEY is set: the key, checked once, becomes an HTTP-only session cookie
(a digest of the key, never the key itself), and every change made with that cookie must carry the page's CSRF
token in a header, which another site's page cannot read or send.

Threat: a page on another site driving a signed-in browser (cross-site request forgery), and a script injected
into a console page reading the key. The cookie is HttpOnly and SameSite=Strict; the CSRF token is derived from the
session, so a forged request without it is refused even if the browser sends the cookie."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mlsvc.security.auth import check_session, session_value
from mlsvc.server.console.pages import COOKIE, api_key, render
from mlsvc.server.deps import CSRF_HEADER

SESSION_S = 12 * 3600

router = APIRouter()


def check_cookie_session(request: Request) -> bool:
    """For the console's own changes (sign-out): see ``security.auth.check_session``."""
    return check_session(
        api_key(request), request.cookies.get(COOKIE), request.method, request.headers.get(CSRF_HEADER)
    )


@router.get("/console/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/console") -> Response:
    return render(request, "login.html", title="Sign in", next=_local(next), failed=False)


@router.post("/console/login", response_class=HTMLResponse)
def login(request: Request, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/console") -> Response:
    expected = api_key(request)
    if not expected:
        return RedirectResponse(_local(next), status_code=303)
    if not hmac.compare_digest(key.encode(), expected.encode()):
        return render(request, "login.html", status_code=401, title="Sign in", next=_local(next), failed=True)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        session_value(expected),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/console/logout")
def logout(request: Request) -> Response:
    check_cookie_session(request)  # a forged sign-out (no CSRF token) is refused too
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _local(target: str) -> str:
    """Only a path of this console: never an open redirect to another site."""
    return target if target.startswith("/console") and not target.startswith("//") else "/console"
