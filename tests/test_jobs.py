"""The durable job queue: claims, leases, reclaiming a dead worker's job, giving up, and failures as messages."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import mlsvc.metadata as queue_module
from mlsvc.config import Settings
from mlsvc.jobs import worker as worker_module
from mlsvc.jobs.worker import Worker
from mlsvc.metadata import LeaseLost
from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from tests.servers import RunningServer


@pytest.fixture
def test_kinds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for kind in ("succeed", "raise_domain_error", "raise_bug"):
        monkeypatch.setitem(worker_module.HANDLERS, f"test.{kind}", f"tests.jobhandlers:{kind}")
        monkeypatch.setitem(queue_module.RESOURCE_OF_JOB, f"test.{kind}", "datasource")
    yield


def _enqueue(store: SqlMetadataStore, rid: str, kind: str, max_attempts: int = 3) -> None:
    now = utcnow()
    record = {
        "id": rid,
        "name": rid,
        "status": "PENDING",
        "message": "",
        "progress": 0.0,
        "created_at": now,
        "updated_at": now,
        "data_uri": "/x.csv",
    }
    store.create("datasource", record, rid, {}, kind, max_attempts)


def _settings(store_url: str, tmp_path: Path, lease_s: float = 30.0) -> Settings:
    base = Settings.from_env()
    return Settings(**{**base.__dict__, "home": tmp_path, "database_url": store_url, "job_lease_s": lease_s})


def test_handler_result_completes_the_resource(
    store: SqlMetadataStore, store_url: str, tmp_path: Path, test_kinds: None
) -> None:
    _enqueue(store, "a", "test.succeed")
    worker = Worker(_settings(store_url, tmp_path), store)
    assert worker.run_once()
    ds = store.get("datasource", "a")
    assert (ds["status"], ds["progress"], ds["row_count"]) == ("COMPLETED", 1.0, 42)
    assert not worker.run_once()


def test_a_domain_error_fails_the_resource_with_its_message(
    store: SqlMetadataStore, store_url: str, tmp_path: Path, test_kinds: None
) -> None:
    _enqueue(store, "a", "test.raise_domain_error")
    Worker(_settings(store_url, tmp_path), store).run_once()
    ds = store.get("datasource", "a")
    assert ds["status"] == "FAILED"
    assert ds["message"] == "column 'churned' not found; columns are ['a', 'b']"


def test_a_bug_fails_the_resource_with_a_message_not_a_traceback(
    store: SqlMetadataStore, store_url: str, tmp_path: Path, test_kinds: None
) -> None:
    _enqueue(store, "a", "test.raise_bug")
    Worker(_settings(store_url, tmp_path), store).run_once()
    ds = store.get("datasource", "a")
    assert ds["status"] == "FAILED"
    assert "ZeroDivisionError: division by zero" in ds["message"] and "Traceback" not in ds["message"]


def test_an_expired_lease_is_reclaimed_and_the_old_holder_can_no_longer_write(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=0.2)
    first = queue.claim("worker-1")
    assert first is not None and store.get("datasource", "a")["status"] == "INPROGRESS"
    assert queue.claim("worker-2") is None  # the lease still holds
    time.sleep(0.3)
    second = queue.claim("worker-2")
    assert second is not None and second.attempt == 2
    with pytest.raises(LeaseLost):
        queue.complete(first, {"row_count": 1})
    assert not queue.heartbeat(first)
    queue.complete(second, {"row_count": 2})
    assert store.get("datasource", "a")["row_count"] == 2


def test_a_heartbeat_keeps_the_lease(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=0.3)
    claim = queue.claim("worker-1")
    assert claim is not None
    for _ in range(4):
        time.sleep(0.15)
        assert queue.heartbeat(claim)
    assert queue.claim("worker-2") is None


def test_after_the_last_attempt_the_resource_is_failed_not_left_inprogress(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create", max_attempts=2)
    queue = SqlJobQueue(store, lease_s=0.1)
    assert queue.claim("w1") is not None
    time.sleep(0.15)
    assert queue.claim("w2") is not None
    time.sleep(0.15)
    assert queue.claim("w3") is None
    ds = store.get("datasource", "a")
    assert ds["status"] == "FAILED" and "stopped responding 2 times" in ds["message"]


def test_concurrent_claims_never_hand_one_job_to_two_workers(store: SqlMetadataStore) -> None:
    for i in range(20):
        _enqueue(store, f"d{i}", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    taken: list[int] = []
    lock = threading.Lock()

    def drain(owner: str) -> None:
        while (claim := queue.claim(owner)) is not None:
            with lock:
                taken.append(claim.job_id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 20


def test_release_hands_the_job_back_without_using_an_attempt(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    claim = queue.claim("w1")
    assert claim is not None
    queue.release(claim)
    assert store.get("datasource", "a")["status"] == "PENDING"
    again = queue.claim("w2")
    assert again is not None and again.attempt == 1


def _big_csv(path: Path, rows: int) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows).round(4) for i in range(12)})
    frame["plan"] = rng.choice(["basic", "plus", "pro"], rows)
    frame["label"] = rng.choice(["yes", "no"], rows)
    frame.to_csv(path, index=False)
    return path


def test_sigkill_of_a_worker_mid_job_and_the_job_still_completes(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    data = _big_csv(tmp_path / "big.csv", 400_000)
    ds = httpx.post(f"{mlsvc_server.url}/v1/datasources", json={"data_uri": str(data), "target": "label"}).json()
    store = SqlMetadataStore(mlsvc_server.database_url, run_migrations=False)
    queue = SqlJobQueue(store, 3)
    deadline = time.monotonic() + 60
    job = None
    while time.monotonic() < deadline:
        job = queue.job_of(ds["id"])
        if job and job["state"] == "RUNNING":
            break
        time.sleep(0.05)
    assert job is not None and job["state"] == "RUNNING"
    pid = int(job["owner"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = httpx.get(f"{mlsvc_server.url}/v1/datasources/{ds['id']}").json()
        if got["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.2)
    assert got["status"] == "COMPLETED", got["message"]
    assert got["row_count"] == 400_000
    job = queue.job_of(ds["id"])
    assert job["attempts"] == 2 and job["state"] == "DONE"
    assert int(job["owner"].split(":")[1]) != pid
    store.dispose()


def test_a_standalone_worker_runs_the_jobs_of_a_server_without_workers(s3_server: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.servers import REPO, start_server, stop_server, wait_done

    server = start_server(tmp_path / "home", {"MLSVC_WORKERS": "0"})
    env = {**os.environ, "MLSVC_HOME": str(server.home), "MLSVC_JOB_POLL_S": "0.2"}
    worker = None
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            ds = api.post("/v1/datasources", json={"data_uri": str(REPO / "datasources" / "churn.csv")}).json()
            time.sleep(1.0)
            assert api.get(f"/v1/datasources/{ds['id']}").json()["status"] == "PENDING"  # no worker in the server
            worker = subprocess.Popen(
                [sys.executable, "-m", "mlsvc.cli", "worker"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert wait_done(api, f"/v1/datasources/{ds['id']}", timeout=60)["status"] == "COMPLETED"
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        stop_server(server)


def test_a_deleted_resource_stays_deleted_whatever_its_job_does(store: SqlMetadataStore) -> None:
    _enqueue(store, "before", "datasource.create")
    _enqueue(store, "during", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    store.update("datasource", "before", {"status": "DELETED"})
    claim = queue.claim("w1")  # the job of "before" is skipped and cancelled
    assert claim is not None and claim.resource_id == "during"
    assert store.get("datasource", "before")["status"] == "DELETED"
    store.update("datasource", "during", {"status": "DELETED"})
    queue.complete(claim, {"row_count": 3})
    during = store.get("datasource", "during")
    assert during["status"] == "DELETED" and during["row_count"] == 3
    assert queue.claim("w2") is None


def test_a_job_handed_back_for_a_deleted_resource_is_cancelled(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    claim = queue.claim("w1")
    assert claim is not None
    store.update("datasource", "a", {"status": "DELETED"})
    queue.release(claim)  # the server shuts down mid-job
    assert store.get("datasource", "a")["status"] == "DELETED"
    assert queue.claim("w2") is None
