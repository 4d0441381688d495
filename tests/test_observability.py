"""What an operator sees of a running `mlsvc serve`: a log line for every job's end and every request (unless
turned off), /docs and /redoc that work without Internet access, an API whose every operation says what it does,
and /metrics that labels predictions and their errors by model name and version."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from mlsvc.config import Settings
from mlsvc.jobs.worker import Worker
from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from mlsvc.metadata.tables import jobs
from mlsvc.server.openapi import openapi_document
from tests.datasets import iris_csv
from tests.rest import completed, error
from tests.servers import RunningServer, start_server, stop_server, wait_done

PREDICT_ERRORS = "mlsvc_predict_errors"  # the parser names a counter's family without its _total


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own with one job worker, so that its log and its metrics hold only this module's work."""
    running = start_server(tmp_path_factory.mktemp("observed-home"), workers=1)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def iris_model(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = iris_csv(tmp_path_factory.mktemp("observed-data"))
    ds = completed(api, "/v1/datasources", {"data_uri": str(path), "target": "species"})
    return completed(api, "/v1/models", {"name": "obs-iris", "datasource_id": ds["id"], "time_budget_s": 1})


def _log_line(server: RunningServer, *parts: str, timeout: float = 30) -> str:
    """The first line of the server's log holding every one of ``parts``; the process writes it just after it
    answers or records the end, so it is waited for."""
    deadline = time.monotonic() + timeout
    while True:
        for line in server.log_text().splitlines():
            if all(part in line for part in parts):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line with {parts} in the log:\n{server.log_text()[-4000:]}")
        time.sleep(0.1)


# --- the log ---


def test_a_failed_job_is_logged_with_its_resource_status_and_message(
    api: httpx.Client, server: RunningServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    created = api.post("/v1/datasources", json={"data_uri": str(empty), "name": "obs-empty"})
    assert created.status_code == 202, created.text
    failed = wait_done(api, f"/v1/datasources/{created.json()['id']}")
    assert failed["status"] == "FAILED" and failed["message"]
    line = _log_line(server, f"datasource {failed['id']} 'obs-empty' FAILED")
    assert " WARNING " in line
    assert line.endswith(failed["message"])


def test_a_completed_job_is_logged_too(api: httpx.Client, server: RunningServer, iris_model: dict[str, Any]) -> None:
    line = _log_line(server, f"model {iris_model['id']} 'obs-iris' v1 COMPLETED")
    assert " INFO " in line and "job " in line


def test_a_job_given_up_after_its_last_attempt_is_logged_by_the_worker_that_finds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlMetadataStore(url)
    now = utcnow()
    fields = {"name": "lost", "status": "PENDING", "message": "", "progress": 0.0, "data_uri": "/x.csv"}
    row = {"id": "obs-lost", **fields, "created_at": now, "updated_at": now}
    store.create("datasource", row, "obs-lost", {}, "datasource.create", 1)  # one attempt only
    claim = SqlJobQueue(store, lease_s=60).claim("a worker that died")
    assert claim is not None
    with store.transaction() as conn:  # its lease ran out: its worker stopped heartbeating
        conn.execute(update(jobs).where(jobs.c.id == claim.job_id).values(lease_until=now))
    mlflow = f"sqlite:///{tmp_path / 'mlflow.db'}"
    here = {"home": tmp_path, "database_url": url, "mlflow_tracking_uri": mlflow, "mlflow_registry_uri": mlflow}
    worker = Worker(Settings(**{**Settings.from_env().__dict__, **here}), store)
    try:
        with caplog.at_level(logging.INFO, "mlsvc.worker"):
            assert worker.run_once() is False
    finally:
        worker.planes.close()
        store.dispose()
    [line] = [r for r in caplog.records if "obs-lost" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith("datasource obs-lost 'lost' FAILED (given up by the queue): the worker")


def test_each_request_is_logged_once_with_its_status_duration_and_request_id(
    api: httpx.Client, server: RunningServer
) -> None:
    answer = api.get("/v1/datasources/obs-no-such", headers={"X-Request-Id": "obs-req-404"})
    error(answer, 404, "not_found")
    assert answer.headers["X-Request-Id"] == "obs-req-404"
    line = _log_line(server, "obs-req-404")
    assert re.search(r"mlsvc\.access INFO GET /v1/datasources/obs-no-such 404 \d+\.\d ms obs-req-404$", line), line
    # One line per request: ours, not uvicorn's as well.
    assert server.log_text().count("obs-req-404") == 1
    assert '"GET /v1/datasources/obs-no-such HTTP/1.1"' not in server.log_text()
    # A request without an id is logged with the one the server gave it.
    given = api.get("/healthz").headers["X-Request-Id"]
    assert given.startswith("srv-")
    assert re.search(rf"GET /healthz 200 \d+\.\d ms {given}$", _log_line(server, given))


def test_the_access_log_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    quiet = start_server(tmp_path_factory.mktemp("quiet-home"), {"MLSVC_ACCESS_LOG": "0"}, workers=0)
    try:
        answer = httpx.get(f"{quiet.url}/v1/datasources", headers={"X-Request-Id": "obs-quiet"}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "obs-quiet"
    finally:
        stop_server(quiet)  # the process has ended: all it would have logged is in the file
    text = quiet.log_text()
    assert "access log       off (MLSVC_ACCESS_LOG=0)" in text
    assert "Finished server process" in text  # the log was captured to the end
    assert "obs-quiet" not in text and "mlsvc.access" not in text


# --- the documentation pages ---


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_only_assets_the_server_serves(api: httpx.Client, page: str) -> None:
    html = api.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "://" not in html.text  # no CDN, no web fonts: nothing from another host
    urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?'([^']+)'""", html.text)
    urls = [a or b for a, b in urls]
    assert "/openapi.json" in urls and len(urls) >= 3, urls
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = api.get(url)
        assert asset.status_code == 200, url
        assert kinds[Path(url).suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 100, url
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(api.get(u).content.startswith(b"/*!") for u in scripts)  # the minified builds


def test_every_operation_says_what_it_does() -> None:
    paths = json.loads(openapi_document())["paths"]
    # FastAPI makes a summary of every function's name ("List Models"); a description is written by hand.
    undescribed = [
        f"{m.upper()} {p}" for p, item in paths.items() for m, op in item.items() if not op.get("description")
    ]
    assert not undescribed, undescribed
    assert len([op for item in paths.values() for op in item.values()]) >= 26


# --- /metrics ---


def _samples(api: httpx.Client, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """A family's samples by their labels (sorted pairs), from /metrics."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in text_string_to_metric_families(api.get("/metrics").text):
        if metric.name == family:
            for sample in metric.samples:
                if sample.name.endswith("_total") or sample.name == family:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _count(api: httpx.Client, family: str, **labels: str) -> float:
    return _samples(api, family).get(tuple(sorted(labels.items())), 0.0)


def test_metrics_label_predictions_and_their_errors_by_model_name_and_version(
    api: httpx.Client, iris_model: dict[str, Any]
) -> None:
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    served = api.post("/v1/models/obs-iris/predict", json={"records": [record, record]})
    assert served.status_code == 200, served.text
    scored = sum(
        v for k, v in _samples(api, "mlsvc_predictions").items() if ("model", "obs-iris") in k and ("version", "1") in k
    )
    assert scored == 2
    assert not any(("model", iris_model["id"]) in k for k in _samples(api, "mlsvc_predictions"))

    known = {"model": "obs-iris", "version": "1"}
    before = {code: _count(api, PREDICT_ERRORS, **known, code=code) for code in ("validation_error", "invalid_request")}
    # Refused by the service (the model is found, the request names no record) ...
    error(api.post("/v1/models/obs-iris/predict", json={"records": []}), 422, "validation_error")
    # ... and before it, by the body's validation and the JSON parser, by a reference not used before.
    error(api.post("/v1/models/obs-iris:1/predict", json={"record": 5}), 422, "validation_error")
    malformed = api.post(
        f"/v1/models/{iris_model['id']}/predict", content=b'{"record": ', headers={"content-type": "application/json"}
    )
    error(malformed, 400, "invalid_request")
    assert _count(api, PREDICT_ERRORS, **known, code="validation_error") == before["validation_error"] + 2
    assert _count(api, PREDICT_ERRORS, **known, code="invalid_request") == before["invalid_request"] + 1

    # A reference that names no model: one series for all of them, whatever was sent.
    unknown = {"model": "unknown", "version": "", "code": "not_found"}
    was = _count(api, PREDICT_ERRORS, **unknown)
    for ref in ("obs-nope", "obs-iris:99"):
        error(api.post(f"/v1/models/{ref}/predict", json={"record": record}), 404, "not_found")
    assert _count(api, PREDICT_ERRORS, **unknown) == was + 2
    assert "obs-nope" not in api.get("/metrics").text
