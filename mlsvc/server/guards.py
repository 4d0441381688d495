"""Guards in front of every route: the Host a request names, and how many requests are in flight.

Host: a page in the user's browser can make it send requests to a service on localhost through a name that
resolves to 127.0.0.1 (DNS rebinding); the request still names the attacker's host, so a service bound to
loopback answers only requests that name a loopback host (configurable behind a proxy: MLSVC_ALLOWED_HOSTS).

Load: past a bounded number of requests in flight, a request is refused at once with 503 and Retry-After
rather than queued into seconds of latency for everyone; liveness, readiness and metrics still answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mlsvc.errors import ErrorCode
from mlsvc.server.errors import error_response

ALWAYS_ANSWERED = ("/healthz", "/readyz", "/metrics")


class HostCheck:
    """Refuses requests whose Host header names a host outside ``allowed`` ('*' allows any)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed)
        self.any = "*" in self.allowed
        # The Host headers seen and allowed: a handful, read once each rather than on every request.
        self.seen: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        raw = header(scope, b"host")
        if raw in self.seen:
            await self.app(scope, receive, send)
            return
        host = _host_name(raw.decode("latin-1"))
        if host in self.allowed:
            if len(self.seen) < 64:  # bounded: the spellings of a few names and ports
                self.seen.add(raw)
            await self.app(scope, receive, send)
            return
        response = error_response(
            ErrorCode.HOST_NOT_ALLOWED,
            f"this service answers requests for {', '.join(sorted(self.allowed))}, not for '{host[:100]}'; "
            "behind a proxy, add the name to MLSVC_ALLOWED_HOSTS",
        )
        await response(scope, receive, send)


def header(scope: Scope, name: bytes) -> bytes:
    """The request header ``name`` (lower case), the last one if it is repeated, or b"": one pass over the list,
    where a dict of all the headers would be built for the one value."""
    found = b""
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found


def _host_name(value: str) -> str:
    """The name part of a Host header: 'localhost:8080' → 'localhost', '[::1]:8080' → '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class ShedLoad:
    """Answers 503 with Retry-After once ``limit`` requests are in flight in this process."""

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = max(1, limit)
        self.retry_after = str(retry_after_s)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = error_response(
                ErrorCode.UNAVAILABLE,
                f"the server is at its limit of {self.limit} requests in flight; retry after {self.retry_after} s",
            )
            response.headers["Retry-After"] = self.retry_after
            await response(scope, receive, send)
            return
        # One event loop per process: the counter needs no lock.
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
