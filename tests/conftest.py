"""Shared fixtures: the loopback S3 server, running mlsvc servers, metadata stores on SQLite and PostgreSQL, and
`api`, an HTTP client on the server a test module speaks to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # imported by pytest as a plugin below; importing it here first would skip its assert rewriting
    from tests.servers import RunningServer

pytest_plugins = ["tests.s3server", "tests.servers", "tests.stores", "tests.browser"]


@pytest.fixture(scope="module")
def server(mlsvc_server: RunningServer) -> RunningServer:
    """The server a module's `api` speaks to: the session's shared one, unless the module defines its own."""
    return mlsvc_server


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
