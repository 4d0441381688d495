"""Real-time scoring paths: a model the compiler refuses is scored by its registered pipeline, with the same
answers, and /metrics counts the fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import mlsvc.prediction.scorer as scorer_module
from mlsvc.prediction.compiled import NotCompilable
from mlsvc.server.app import create_app
from tests.datasets import iris_csv
from tests.inprocess import serving, settings_for
from tests.rest import completed
from tests.scoring import assert_served_as_registered, registered_pipeline
from tests.servers import RunningServer

RECORDS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.4, "petal_length": 4.5, "petal_width": 1.5},
    {"petal_length": 6.1},
    {},
]


@pytest.fixture(scope="module")
def iris(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = iris_csv(tmp_path_factory.mktemp("serving"))
    ds = completed(api, "/v1/datasources", {"data_uri": str(path), "target": "species"})
    return completed(api, "/v1/models", {"name": "iris-serving", "datasource_id": ds["id"], "time_budget_s": 1})


@pytest.fixture
def uncompiled_app(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The app in this process over the server's own store and registry, with a compiler that refuses every
    model, as it refuses a pipeline it has no exact translation for."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotCompilable("refused by the test")

    monkeypatch.setattr(scorer_module, "compile_pipeline", refuse)
    app = create_app(settings_for(server.home, local_roots=(Path("/"),)))
    yield app
    app.state.service.close()


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text, by name and exact labels (0 when absent)."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    values = [float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == wanted]
    return values[0] if values else 0.0


def test_a_model_the_compiler_refuses_is_scored_by_its_pipeline(
    api: httpx.Client, server: RunningServer, iris: dict[str, Any], uncompiled_app: FastAPI
) -> None:
    with serving(uncompiled_app) as url, httpx.Client(base_url=url, timeout=60) as local:
        fallback = local.post(f"/v1/models/{iris['id']}/predict", json={"records": RECORDS})
        assert fallback.status_code == 200, fallback.text
        local_metrics = local.get("/metrics").text
    compiled = api.post(f"/v1/models/{iris['id']}/predict", json={"records": RECORDS}).json()
    answer = fallback.json()
    assert (answer["model_id"], answer["version"]) == (iris["id"], 1)
    assert_served_as_registered(registered_pipeline(server, iris), iris, RECORDS, answer["predictions"])
    assert_served_as_registered(registered_pipeline(server, iris), iris, RECORDS, compiled["predictions"])
    assert [p["warnings"] for p in answer["predictions"]] == [p["warnings"] for p in compiled["predictions"]]
    # Each process counts how it scored: the test's by the pipeline, the server's compiled.
    labels = {"model": iris["name"], "version": "1"}
    assert _metric(local_metrics, "mlsvc_scoring_fallback_total", **labels) == len(RECORDS)
    assert _metric(local_metrics, "mlsvc_predictions_total", path="pipeline", **labels) == len(RECORDS)
    assert _metric(local_metrics, "mlsvc_predictions_total", path="compiled", **labels) == 0
    server_metrics = api.get("/metrics").text
    assert _metric(server_metrics, "mlsvc_predictions_total", path="compiled", **labels) >= len(RECORDS)
    assert _metric(server_metrics, "mlsvc_scoring_fallback_total", **labels) == 0
