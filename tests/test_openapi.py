"""api/openapi.json is the contract: it must be what the app serves now."""

from __future__ import annotations

import json

import httpx

from mlsvc.server.openapi import openapi_document
from tests.servers import REPO, RunningServer


def test_the_committed_contract_is_current() -> None:
    committed = (REPO / "api" / "openapi.json").read_text()
    assert committed == openapi_document(), "api/openapi.json is stale: run `make openapi` and commit it"


def test_the_server_serves_the_same_contract_and_docs(mlsvc_server: RunningServer) -> None:
    served = httpx.get(f"{mlsvc_server.url}/openapi.json").json()
    assert served == json.loads((REPO / "api" / "openapi.json").read_text())
    assert httpx.get(f"{mlsvc_server.url}/docs").status_code == 200
