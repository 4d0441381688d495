"""Bad inputs get a clear 4xx that names the problem: path-step ids, non-finite and non-numeric numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlsvc.server.app import create_app
from tests.apps import http_client
from tests.inprocess import settings_for


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = settings_for(tmp_path_factory.mktemp("inputs"), local_roots=(Path.cwd(),))
    app = create_app(settings)
    with http_client(app) as client:
        yield client
    app.state.service.close()


def _problem(client: httpx.Client, path: str, body: str) -> str:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return str(error["message"])


@pytest.mark.parametrize("rid", [".", ".."])
def test_path_steps_are_no_ids(api: httpx.Client, rid: str) -> None:
    message = _problem(api, "/v1/datasources", f'{{"id": "{rid}", "data_uri": "datasources/churn.csv"}}')
    assert "cannot be an id" in message


@pytest.mark.parametrize("budget", ["NaN", "Infinity", "-Infinity"])
def test_a_time_budget_must_be_a_finite_number(api: httpx.Client, budget: str) -> None:
    body = f'{{"name": "m", "datasource_id": "ds-x", "time_budget_s": {budget}}}'
    message = _problem(api, "/v1/models", body)
    assert "time_budget_s" in message and ("finite number" in message or "greater than 0" in message)
    assert "86400" not in message


@pytest.mark.parametrize("value", ["false", "true", '"0.2"'])
def test_a_fraction_is_a_number_not_a_boolean_or_text(api: httpx.Client, value: str) -> None:
    body = f'{{"data_uri": "datasources/churn.csv", "max_invalid_fraction": {value}}}'
    assert "max_invalid_fraction" in _problem(api, "/v1/datasources", body)
