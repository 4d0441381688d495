"""Authentication of API callers.

Threat: anyone who can reach the port drives the service (reads data, trains, predicts, deletes). When an
API key is configured, every call but liveness must carry it; the comparison takes the same time whatever
the guess, so the key cannot be found a byte at a time. Transports pass the headers they received.
"""

from __future__ import annotations

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
