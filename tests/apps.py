"""The real app served on a loopback socket in this process, with an httpx client on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import FastAPI

from tests.inprocess import serving


@contextmanager
def http_client(app: FastAPI) -> Iterator[httpx.Client]:
    """An httpx client on ``app``, served by uvicorn on a free loopback port until the block ends."""
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client
