"""Authentication of API callers.

Threat: anyone who can reach the port drives the service (reads data, trains, predicts, deletes). When an
API key is configured, every call but liveness must carry it; the comparison takes the same time whatever
the guess, so the key cannot be found a byte at a time. Transports pass the headers they received.
"""

from __future__ import annotations

import hashlib
import hmac

from mlsvc.errors import ErrorCode, MlsvcError


def presented_key(authorization: str | None, x_api_key: str | None) -> str:
    """The key a caller presented: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    header = authorization or ""
    return header[7:] if header.lower().startswith("bearer ") else (x_api_key or "")


def check_api_key(expected: str | None, authorization: str | None, x_api_key: str | None) -> None:
    """Refuse a call without the configured key; with none configured, every caller is let in."""
    if not expected:
        return
    given = presented_key(authorization, x_api_key)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise MlsvcError(ErrorCode.UNAUTHENTICATED, "a valid API key is required (Authorization: Bearer KEY)")


# The console's session (mlsvc.server.console.session): a browser that signed in with the key holds, in an
# HTTP-only cookie, a digest of the key, never the key; every change it makes carries a CSRF token derived from
# that digest, which a page of another site can neither read nor send.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_value(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"mlsvc console session", hashlib.sha256).hexdigest()


def csrf_for(session: str) -> str:
    return hmac.new(session.encode(), b"mlsvc console csrf", hashlib.sha256).hexdigest()


def check_session(expected: str | None, cookie: str | None, method: str, csrf: str | None) -> bool:
    """Whether a call is authenticated by the console's session cookie: False without one (the caller must then
    present the key); raises when the cookie is not the session's, or a change lacks its CSRF token."""
    if not expected or cookie is None:
        return False
    session = session_value(expected)
    if not hmac.compare_digest(cookie.encode(), session.encode()):
        raise MlsvcError(ErrorCode.UNAUTHENTICATED, "the console session has expired; sign in again at /console/login")
    if method not in SAFE_METHODS and not hmac.compare_digest((csrf or "").encode(), csrf_for(session).encode()):
        raise MlsvcError(
            ErrorCode.UNAUTHENTICATED, "a change made with the console's session must carry its X-CSRF-Token header"
        )
    return True
