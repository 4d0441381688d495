"""The access log: one line per HTTP request (method, path, status, duration, request id) on ``mlsvc.access``."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mlsvc.access")

# What a client sent may hold control characters; written as escapes, one request stays one line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class AccessLog:
    """Logs each request once it is answered: ``GET /v1/models/churn 200 2.1 ms srv-…``. Inside RequestId, so the
    line names the id the answer carries; outside every other guard, so refusals (403, 413, 503) are logged too.
    A request that raised is logged as the 500 the app answers it with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, answered = 500, None

        async def recorded(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = time.perf_counter()  # what the client waited; work after the answer is not counted

        try:
            await self.app(scope, receive, recorded)
        finally:
            log.info(
                "%s %s %d %.1f ms %s",
                scope["method"],
                _printable(_path(scope)),
                status,
                ((answered or time.perf_counter()) - started) * 1000,
                _printable(scope.get("state", {}).get("request_id", "-")),
            )


def _path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded), with its query string."""
    raw = scope.get("raw_path")
    # Some ASGI clients (httpx's ASGITransport) put the query into raw_path as well.
    path = raw.split(b"?", 1)[0].decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
