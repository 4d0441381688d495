"""The durable job queue: claims, leases, reclaiming a dead worker's job, giving up, failures as messages, and
deletes that stop jobs (at a progress report, or by replacing the worker process)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

import mlsvc.metadata as queue_module
from mlsvc.config import Settings
from mlsvc.jobs import worker as worker_module
from mlsvc.jobs.context import JobContext
from mlsvc.jobs.worker import Worker
from mlsvc.metadata import Claim, JobCancelled, LeaseLost
from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from mlsvc.metadata.tables import jobs
from tests import servers
from tests.servers import CHURN, RunningServer, run_jobs, wait_done


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


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("test.raise_domain_error", "column 'churned' not found; columns are ['a', 'b']"),  # the error's own message
        ("test.raise_bug", "internal error while running the job (ZeroDivisionError: division by zero)"),
    ],
)
def test_a_failing_handler_fails_the_resource_with_a_message_not_a_traceback(
    store: SqlMetadataStore, store_url: str, tmp_path: Path, test_kinds: None, kind: str, message: str
) -> None:
    _enqueue(store, "a", kind)
    Worker(_settings(store_url, tmp_path), store).run_once()
    ds = store.get("datasource", "a")
    assert ds["status"] == "FAILED"
    assert ds["message"] == message and "Traceback" not in ds["message"]


def _expire(store: SqlMetadataStore, claim: Claim) -> None:
    """Put the job's lease in the past, as if its worker had stopped heartbeating a while ago."""
    with store.transaction() as conn:
        conn.execute(update(jobs).where(jobs.c.id == claim.job_id).values(lease_until=utcnow() - timedelta(seconds=1)))


def test_an_expired_lease_is_reclaimed_and_the_old_holder_can_no_longer_write(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    first = queue.claim("worker-1")
    assert first is not None and store.get("datasource", "a")["status"] == "INPROGRESS"
    assert queue.claim("worker-2") is None  # the lease still holds
    _expire(store, first)
    second = queue.claim("worker-2")
    assert second is not None and second.attempt == 2
    with pytest.raises(LeaseLost):
        queue.complete(first, {"row_count": 1})
    assert not queue.heartbeat(first)
    queue.complete(second, {"row_count": 2})
    assert store.get("datasource", "a")["row_count"] == 2


def test_a_heartbeat_keeps_the_lease(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    claim = queue.claim("worker-1")
    assert claim is not None
    _expire(store, claim)
    assert queue.heartbeat(claim)  # renewed before another worker looked
    assert queue.claim("worker-2") is None
    _expire(store, claim)  # no heartbeat this time
    again = queue.claim("worker-2")
    assert again is not None and again.attempt == 2 and not queue.heartbeat(claim)


def test_after_the_last_attempt_the_resource_is_failed_not_left_inprogress(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create", max_attempts=2)
    queue = SqlJobQueue(store, lease_s=60)
    first = queue.claim("w1")
    assert first is not None
    _expire(store, first)
    second = queue.claim("w2")
    assert second is not None and second.attempt == 2
    _expire(store, second)
    assert queue.claim("w3") is None
    ds = store.get("datasource", "a")
    assert ds["status"] == "FAILED" and "stopped responding 2 times" in ds["message"]
    with pytest.raises(LeaseLost):
        queue.complete(second, {"row_count": 1})


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


def test_a_deferred_job_waits_its_time_pending_and_keeps_its_attempts(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    claim = queue.claim("w1")
    assert claim is not None
    queue.defer(claim, 0.5, "waiting for datasource 'b' (INPROGRESS) to complete")
    resource = store.get("datasource", "a")
    assert resource["status"] == "PENDING" and resource["message"].startswith("waiting for datasource 'b'")
    assert queue.claim("w2") is None  # not before its time
    time.sleep(0.6)
    again = queue.claim("w2")
    assert again is not None and again.attempt == 1 and again.resource_id == "a"


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
    try:
        deadline = time.monotonic() + 60
        job = queue.job_of(ds["id"])
        while time.monotonic() < deadline and (job is None or job["state"] != "RUNNING"):
            time.sleep(0.05)
            job = queue.job_of(ds["id"])
        assert job is not None and job["state"] == "RUNNING" and job["attempts"] == 1, job
        pid = int(job["owner"].split(":")[1])
        assert os.getpgid(pid) == mlsvc_server.process.pid  # one of this server's worker processes
        os.kill(pid, signal.SIGKILL)
        with httpx.Client(base_url=mlsvc_server.url, timeout=30) as api:
            got = wait_done(api, f"/v1/datasources/{ds['id']}", timeout=120)
        assert got["status"] == "COMPLETED", got["message"]
        assert got["row_count"] == 400_000
        job = queue.job_of(ds["id"])
        assert job is not None and job["attempts"] == 2 and job["state"] == "DONE"
        assert int(job["owner"].split(":")[1]) != pid
    finally:
        store.dispose()


def test_a_standalone_worker_runs_the_jobs_of_a_server_without_workers(
    idle_server: RunningServer, idle_api: httpx.Client
) -> None:
    ds = idle_api.post("/v1/datasources", json={"data_uri": str(CHURN)}).json()
    time.sleep(1.0)
    assert idle_api.get(f"/v1/datasources/{ds['id']}").json()["status"] == "PENDING"  # no worker in the server
    [done] = run_jobs(idle_server, f"/v1/datasources/{ds['id']}")  # and the worker exits 0 on SIGTERM
    assert done["status"] == "COMPLETED" and done["row_count"] == 5000


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


# --- deletes stop jobs ---


def report_until_stopped(ctx: JobContext) -> Mapping[str, Any]:
    """A handler that reports progress often and would never end by itself."""
    while True:
        ctx.progress(0.5)
        time.sleep(0.05)


def stuck(ctx: JobContext) -> Mapping[str, Any]:
    """A handler that never reports (as in a long native fit) and has started a process of its own, whose pid it
    writes to the file its resource names as data."""
    helper = subprocess.Popen(["sleep", "600"])
    Path(ctx.resource["data_uri"]).write_text(str(helper.pid))
    time.sleep(600)
    return {}


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for a parent that is not reaping counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_deleting_a_queued_resource_cancels_its_job_at_once(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    store.delete("datasource", "a")
    queue = SqlJobQueue(store, lease_s=60)
    job = queue.job_of("a")
    assert job is not None and job["state"] == "CANCELLED" and "deleted before its job ran" in job["error"]
    assert store.get("datasource", "a")["status"] == "DELETED"
    assert queue.claim("w1") is None


def test_the_heartbeat_and_reports_of_a_running_job_tell_it_its_resource_was_deleted(store: SqlMetadataStore) -> None:
    _enqueue(store, "a", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    claim = queue.claim("w1")
    assert claim is not None and not queue.cancelled(claim) and queue.heartbeat(claim)
    store.delete("datasource", "a")
    assert queue.cancelled(claim)
    with pytest.raises(JobCancelled):
        queue.heartbeat(claim)
    assert queue.claim("w2") is None  # the beat still kept the lease while the worker stops the job
    with pytest.raises(JobCancelled):
        queue.report(claim, {"progress": 0.5, "row_count": 3})
    queue.cancel(claim, "deleted")
    job = queue.job_of("a")
    assert job is not None and (job["state"], job["error"]) == ("CANCELLED", "deleted")
    assert store.get("datasource", "a")["status"] == "DELETED" and "row_count" not in store.get("datasource", "a")
    with pytest.raises(LeaseLost):
        queue.cancel(claim, "again")


def test_a_running_job_stops_at_its_next_progress_report_once_its_resource_is_deleted(
    store: SqlMetadataStore, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(worker_module.HANDLERS, "test.report", "tests.test_jobs:report_until_stopped")
    monkeypatch.setitem(queue_module.RESOURCE_OF_JOB, "test.report", "datasource")
    _enqueue(store, "a", "test.report")
    worker = Worker(_settings(store_url, tmp_path, lease_s=3), store)
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    queue = SqlJobQueue(store, lease_s=3)
    _wait(lambda: store.get("datasource", "a")["status"] == "INPROGRESS", "the job to start")
    store.delete("datasource", "a")
    thread.join(60)
    assert not thread.is_alive(), "the handler ran on after its resource was deleted"
    job = queue.job_of("a")
    assert job is not None and job["state"] == "CANCELLED" and "deleted while its job ran" in job["error"]
    assert store.get("datasource", "a")["status"] == "DELETED"
    assert queue.claim("w2") is None  # finished, not retried


def _stuck_worker(settings: Settings) -> None:
    """A worker process of its own (as `mlsvc serve` starts them) that knows the test's stuck handler."""
    worker_module.HANDLERS["test.stuck"] = "tests.test_jobs:stuck"
    queue_module.RESOURCE_OF_JOB["test.stuck"] = "datasource"
    Worker(settings, replaceable=True).run_once()


def test_a_deleted_job_that_does_not_report_is_stopped_by_ending_its_worker_process(
    store: SqlMetadataStore, store_url: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "helper.pid"
    now = utcnow()
    record = {"id": "a", "name": "a", "status": "PENDING", "message": "", "progress": 0.0, "created_at": now}
    store.create("datasource", {**record, "updated_at": now, "data_uri": str(pid_file)}, "a", {}, "test.stuck")
    worker = multiprocessing.get_context("spawn").Process(
        target=_stuck_worker, args=(_settings(store_url, tmp_path, lease_s=3),)
    )
    worker.start()
    try:
        _wait(lambda: pid_file.exists() and pid_file.read_text() != "", "the stuck job to start", timeout=120)
        helper = int(pid_file.read_text())
        store.delete("datasource", "a")
        worker.join(60)
        assert worker.exitcode == worker_module.EXIT_REPLACE  # it ended itself, for its supervisor to replace
    finally:
        if worker.is_alive():
            worker.kill()
    job = SqlJobQueue(store, lease_s=3).job_of("a")
    assert job is not None and job["state"] == "CANCELLED" and "worker process was replaced" in job["error"]
    _wait(lambda: _gone(helper), "the process the job started to end")


def test_the_queue_tells_which_jobs_it_ended_without_running(store: SqlMetadataStore) -> None:
    _enqueue(store, "given-up", "datasource.create", max_attempts=1)
    _enqueue(store, "deleted", "datasource.create")
    queue = SqlJobQueue(store, lease_s=60)
    first, second = queue.claim("w1"), queue.claim("w1")
    assert first is not None and second is not None
    store.delete("datasource", "deleted")
    _expire(store, first)
    _expire(store, second)
    ended: list[tuple[str, str]] = []
    assert queue.claim("w2", lambda kind, rid: ended.append((kind, rid))) is None
    assert ended == [("datasource.create", "given-up"), ("datasource.create", "deleted")]  # to clean up after
    states = [(job["state"] if job else None) for job in (queue.job_of("given-up"), queue.job_of("deleted"))]
    assert states == ["FAILED", "CANCELLED"]


def test_a_standalone_worker_process_that_dies_is_replaced(
    idle_server: RunningServer, idle_api: httpx.Client, tmp_path: Path
) -> None:
    env = {k: v for k, v in idle_server.env.items() if k != "MLSVC_PORT"}
    worker = servers._spawn("worker", env, tmp_path / "w.log")
    store = SqlMetadataStore(idle_server.database_url, run_migrations=False)
    queue = SqlJobQueue(store, 3)
    try:
        first = idle_api.post("/v1/datasources", json={"data_uri": str(CHURN)}).json()
        assert wait_done(idle_api, f"/v1/datasources/{first['id']}")["status"] == "COMPLETED"
        job = queue.job_of(first["id"])
        assert job is not None
        pid = int(job["owner"].split(":")[1])
        os.kill(pid, signal.SIGKILL)  # the worker process itself, not `mlsvc worker`, which keeps it running
        second = idle_api.post("/v1/datasources", json={"data_uri": str(CHURN)}).json()
        assert wait_done(idle_api, f"/v1/datasources/{second['id']}")["status"] == "COMPLETED"
        job = queue.job_of(second["id"])
        assert job is not None and int(job["owner"].split(":")[1]) != pid
    finally:
        store.dispose()
        exit_code = servers._stop(worker)
    assert exit_code == 0, (tmp_path / "w.log").read_text()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.05)
