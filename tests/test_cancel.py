"""Deletes stop running jobs, over real HTTP with real worker processes: a model deleted mid-training registers no
MLflow version, a batch prediction deleted mid-scoring publishes nothing and leaves no staging, each job row ends
CANCELLED (not retried), and the one worker takes the next job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI

from mlsvc.jobs.context import JobContext
from mlsvc.jobs.worker import Worker
from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.server.app import create_app
from mlsvc.training import job as training_job
from tests.inprocess import serving, settings_for
from tests.rest import completed
from tests.servers import CHURN, RunningServer, start_server, stop_server


@pytest.fixture(scope="module")
def server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One worker process (so the next job can only run once the deleted one's worker is free), whose batch jobs
    score in processes of their own."""
    running = start_server(tmp_path_factory.mktemp("cancel-home"), {"MLSVC_BATCH_PROCESSES": "2"}, workers=1)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def queue(server: RunningServer) -> Iterator[SqlJobQueue]:
    store = SqlMetadataStore(server.database_url, run_migrations=False)
    yield SqlJobQueue(store, 3)
    store.dispose()


@pytest.fixture(scope="module")
def churn(api: httpx.Client) -> dict[str, Any]:
    return completed(api, "/v1/datasources", {"id": "cancel-churn", "data_uri": str(CHURN)})


def _until(api: httpx.Client, path: str, ready: Any, what: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.get(path).json()
        if ready(body):
            return body
        assert body["status"] in ("PENDING", "INPROGRESS"), body
        time.sleep(0.1)
    raise AssertionError(f"{path} never got to {what}")


def _ended(queue: SqlJobQueue, resource_id: str, timeout: float = 120) -> dict[str, Any]:
    """The resource's job row once it is no longer QUEUED or RUNNING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = queue.job_of(resource_id)
        if job is not None and job["state"] not in ("QUEUED", "RUNNING"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"the job of {resource_id} is still {queue.job_of(resource_id)}")


def test_deleting_a_model_mid_training_stops_its_job_registers_nothing_and_frees_the_worker(
    api: httpx.Client, server: RunningServer, queue: SqlJobQueue, churn: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    body = {"name": "cancel-me", "datasource_id": churn["id"], "time_budget_s": 60}
    model = api.post("/v1/models", json=body).json()
    path = f"/v1/models/{model['id']}"
    _until(api, path, lambda m: m["status"] == "INPROGRESS" and m["progress"] > 0.1, "searching")
    deleted = api.delete(path)
    assert deleted.status_code == 200 and deleted.json()["status"] == "DELETED"
    job = _ended(queue, model["id"])
    assert job["state"] == "CANCELLED" and job["attempts"] == 1, job  # stopped, not run to its end nor retried
    assert "deleted while its job ran" in job["error"]
    # The one worker (or the process that replaced it) takes the next job.
    completed(api, "/v1/datasources", {"data_uri": str(CHURN)})
    after = api.get(path).json()
    assert after["status"] == "DELETED" and after["version"] == 1  # its number, given when it was created
    client = MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    assert client.search_model_versions("name='cancel-me'") == []


def test_deleting_a_batch_prediction_mid_scoring_publishes_nothing_and_frees_the_worker(
    api: httpx.Client, queue: SqlJobQueue, churn: dict[str, Any], tmp_path: Path
) -> None:
    # k-NN scores slowly (every row against every training row): the job is still scoring when it is deleted.
    knn = {"name": "cancel-batch", "datasource_id": churn["id"], "candidates": [{"family": "knn"}]}
    model = completed(api, "/v1/models", knn)
    big = pd.concat([pd.read_csv(CHURN, dtype=str, keep_default_na=False)] * 60, ignore_index=True)
    big.drop(columns=["churned"]).to_csv(tmp_path / "big.csv", index=False)
    out = tmp_path / "out"
    body = {"model": model["id"], "data_uri": str(tmp_path / "big.csv"), "output_uri": str(out)}
    bp = api.post("/v1/batch-predictions", json=body).json()
    path = f"/v1/batch-predictions/{bp['id']}"
    _until(api, path, lambda b: b["status"] == "INPROGRESS" and b["rows_scored"] > 0, "scoring")
    assert api.delete(path).json()["status"] == "DELETED"
    job = _ended(queue, bp["id"])
    assert job["state"] == "CANCELLED" and job["attempts"] == 1, job
    # Nothing published, nothing staged: no manifest, no result, no staging folder.
    leftovers = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert leftovers in ([], ["batch-prediction"]), leftovers
    # The worker takes the next job: a whole batch prediction to the same place.
    done = completed(api, "/v1/batch-predictions", {**body, "data_uri": str(CHURN)})
    assert (out / "batch-prediction" / f"{done['id']}.manifest").exists()
    assert api.get(path).json()["status"] == "DELETED"


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[tuple[FastAPI, httpx.Client]]:
    """The real app in this process (so a test can time a delete against the job's steps), with the churn example's
    first rows as a COMPLETED datasource; its jobs run with ``_run_one``."""
    data = tmp_path / "data"
    data.mkdir()
    pd.read_csv(CHURN, nrows=300).to_csv(data / "churn.csv", index=False)
    app = create_app(settings_for(tmp_path / "home", local_roots=(data.resolve(),)))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=60) as api:
            made = api.post(
                "/v1/datasources", json={"id": "churn", "data_uri": str(data / "churn.csv"), "target": "churned"}
            )
            assert made.status_code == 202, made.text
            assert _run_one(app) and api.get("/v1/datasources/churn").json()["status"] == "COMPLETED"
            yield app, api
    finally:
        app.state.service.close()


def _run_one(app: FastAPI) -> bool:
    return Worker(app.state.service.settings, app.state.service.planes.metadata).run_once()


def _mlflow(app: FastAPI) -> Any:
    from mlflow import MlflowClient

    settings = app.state.service.settings
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_registry_uri)


def test_a_model_deleted_just_after_its_version_was_registered_leaves_no_version_run_or_evaluation(
    inprocess: tuple[FastAPI, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, api = inprocess
    model = api.post("/v1/models", json={"name": "late", "datasource_id": "churn", "time_budget_s": 1}).json()
    registered = training_job.register

    def register_then_deleted(ctx: JobContext, *args: Any) -> Any:
        """The user's DELETE lands once MLflow holds the version, and the job sees it before its next report."""
        version = registered(ctx, *args)
        assert api.delete(f"/v1/models/{model['id']}").status_code == 200
        assert ctx.cancelled.wait(10), "the heartbeat never saw the delete"
        return version

    monkeypatch.setattr(training_job, "register", register_then_deleted)
    assert _run_one(app)
    job = app.state.service.planes.queue.job_of(model["id"])
    assert job is not None and job["state"] == "CANCELLED", job
    after = api.get(f"/v1/models/{model['id']}").json()
    assert after["status"] == "DELETED" and after["version"] == 1  # its number, given when it was created
    client = _mlflow(app)
    assert client.search_model_versions("name='late'") == []
    runs = client.search_runs(["0", *[e.experiment_id for e in client.search_experiments()]], run_view_type=3)
    assert runs and all(run.info.lifecycle_stage == "deleted" for run in runs)  # the run and its candidates' runs
    holdout = api.get(f"/v1/evaluations/ev-{model['id']}-holdout")
    assert holdout.status_code == 200 and holdout.json()["status"] == "DELETED"


def test_a_training_run_again_after_its_worker_died_replaces_the_version_the_first_attempt_registered(
    inprocess: tuple[FastAPI, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, api = inprocess
    model = api.post("/v1/models", json={"name": "again", "datasource_id": "churn", "time_budget_s": 1}).json()
    registered = training_job.register
    attempts: list[int] = []

    def dies_after_the_first_registration(ctx: JobContext, *args: Any) -> Any:
        version = registered(ctx, *args)
        attempts.append(version.version)
        if len(attempts) == 1:
            raise KeyboardInterrupt  # the worker stops here; its job goes back to the queue
        return version

    monkeypatch.setattr(training_job, "register", dies_after_the_first_registration)
    with pytest.raises(KeyboardInterrupt):
        _run_one(app)
    assert _run_one(app)
    done = api.get(f"/v1/models/{model['id']}").json()
    # MLflow never reuses the number it gave the first attempt: the version is MLflow's 2, and stays mlsvc's 1.
    assert done["status"] == "COMPLETED" and attempts == [1, 2] and done["version"] == 1, done
    [kept] = _mlflow(app).search_model_versions("name='again'")
    assert (int(kept.version), kept.tags["mlsvc.version"]) == (2, "1")
    assert _mlflow(app).get_model_version_by_alias("again", "production").version in (2, "2")
    served = api.post("/v1/models/again/predict", json={"records": [{"tenure_months": 3}]})
    assert served.status_code == 200, served.text
