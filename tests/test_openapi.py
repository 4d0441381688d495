"""api/openapi.json is the contract: it must be what the app serves now."""

from __future__ import annotations

import json

import httpx

from mlsvc.resources import ALIAS_PATTERN
from mlsvc.server.openapi import openapi_document
from tests.servers import REPO, RunningServer


def test_the_committed_contract_is_current() -> None:
    committed = (REPO / "api" / "openapi.json").read_text()
    assert committed == openapi_document(), "api/openapi.json is stale: run `make openapi` and commit it"


def test_the_server_serves_the_same_contract_and_docs(mlsvc_server: RunningServer) -> None:
    served = httpx.get(f"{mlsvc_server.url}/openapi.json").json()
    assert served == json.loads((REPO / "api" / "openapi.json").read_text())
    assert httpx.get(f"{mlsvc_server.url}/docs").status_code == 200


def test_a_405_allows_every_method_the_path_documents(mlsvc_server: RunningServer) -> None:
    documented = json.loads((REPO / "api" / "openapi.json").read_text())["paths"]
    for path, template in (("/v1/models/m-1", "/v1/models/{ref}"), ("/v1/datasources", "/v1/datasources")):
        answer = httpx.request("OPTIONS", mlsvc_server.url + path)
        assert answer.status_code == 405
        assert answer.headers["Allow"] == ", ".join(sorted(m.upper() for m in documented[template]))
        assert answer.json()["error"]["code"] == "invalid_request"


def test_the_alias_parameter_takes_what_the_service_takes(mlsvc_server: RunningServer) -> None:
    operations = json.loads((REPO / "api" / "openapi.json").read_text())["paths"]["/v1/models/{name}/aliases/{alias}"]
    for operation in operations.values():
        [alias] = [p for p in operation["parameters"] if p["name"] == "alias"]
        assert alias["schema"]["pattern"] == ALIAS_PATTERN
    refused = httpx.put(f"{mlsvc_server.url}/v1/models/m/aliases/1st", json={"version": 1})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"
