"""Pytest plugin: the real `mlsvc serve` in a subprocess on a free loopback port, with its own MLSVC_HOME; a
server without job workers, whose jobs run only when a test runs a `mlsvc worker` process for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore

REPO = Path(__file__).resolve().parent.parent
CHURN = REPO / "datasources" / "churn.csv"


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.env.get("MLSVC_DATABASE_URL") or f"sqlite:///{self.home / 'mlsvc.db'}"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, extra_env: dict[str, str] | None = None, workers: int = 2) -> RunningServer:
    port = free_port()
    env = {
        **os.environ,
        "MLSVC_HOME": str(home),
        "MLSVC_PORT": str(port),
        "MLSVC_WORKERS": str(workers),
        "MLSVC_JOB_LEASE_S": "3",
        "MLSVC_JOB_POLL_S": "0.2",
        # The tests keep their data in temporary folders; the default roots are tested on their own.
        "MLSVC_LOCAL_ROOTS": "/",
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    process = _spawn("serve", env, log)
    server = RunningServer(f"http://127.0.0.1:{port}", home, process, log, env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlsvc serve exited with {process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"mlsvc serve did not answer within 90 s:\n{server.log_text()}")


def _spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`mlsvc COMMAND` in a session of its own (so that it and its children can be signalled together), its output
    appended to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "mlsvc.cli", command],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[Any], grace_s: float = 20) -> int:
    """SIGTERM to the process group, SIGKILL after ``grace_s``; the exit code (negative: killed by a signal)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return int(process.returncode)


def stop_server(server: RunningServer) -> None:
    _stop(server.process)


@pytest.fixture(scope="session")
def mlsvc_server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the session (it inherits the loopback S3 endpoint from the environment)."""
    server = start_server(tmp_path_factory.mktemp("mlsvc-home"))
    yield server
    stop_server(server)


def wait_done(api: httpx.Client, path: str, timeout: float = 180) -> dict[str, Any]:
    """Poll a resource until its job finished (COMPLETED or FAILED) and return it."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(path).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} still {body.get('status')} after {timeout:.0f} s")


def run_cli(
    server: RunningServer, *args: str, env: dict[str, str | None] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`mlsvc ARGS…` against ``server`` (MLSVC_URL), as a user runs it; ``env`` adds variables (None removes one)."""
    merged: dict[str, str | None] = {**os.environ, "MLSVC_URL": server.url, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlsvc.cli", *args],
        cwd=REPO,
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- a server whose jobs run only when a test says so ---


@pytest.fixture(scope="session")
def idle_server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server without job workers: what is created on it stays PENDING until `run_jobs` runs a worker."""
    server = start_server(tmp_path_factory.mktemp("idle-home"), workers=0)
    yield server
    stop_server(server)


def run_jobs(server: RunningServer, *paths: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Run one `mlsvc worker` process on the server's store until the resources at ``paths`` finished, then stop
    it with SIGTERM, which it must obey by exiting 0; the resources as they ended."""
    worker = _spawn("worker", {k: v for k, v in server.env.items() if k != "MLSVC_PORT"}, server.home / "worker.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            done = [wait_done(api, path, timeout) for path in paths]
    finally:
        exit_code = _stop(worker)
    assert exit_code == 0, f"mlsvc worker exited with {exit_code} on SIGTERM"
    return done


@pytest.fixture(scope="session")
def idle_churn(idle_server: RunningServer) -> dict[str, Any]:
    """The churn example as a COMPLETED datasource of the idle server."""
    with httpx.Client(base_url=idle_server.url, timeout=30) as api:
        created = api.post("/v1/datasources", json={"data_uri": str(CHURN), "id": "idle-churn"})
        assert created.status_code == 202, created.text
    [ds] = run_jobs(idle_server, "/v1/datasources/idle-churn")
    assert ds["status"] == "COMPLETED", ds["message"]
    return ds


@pytest.fixture
def idle_api(idle_server: RunningServer) -> Iterator[httpx.Client]:
    """A client on the idle server. What the test leaves PENDING there is deleted afterwards, so that the next
    worker a test runs spends no time on it."""
    with httpx.Client(base_url=idle_server.url, timeout=30) as client:
        yield client
        for kind in ("models", "evaluations", "batch-predictions", "datasources"):
            for item in client.get(f"/v1/{kind}", params={"status": "PENDING", "limit": 1000}).json()["items"]:
                client.delete(f"/v1/{kind}/{item['id']}").raise_for_status()


def claimed_and_scoring(api: httpx.Client, queue: SqlJobQueue, resource_id: str) -> dict[str, Any]:
    """The job of a batch prediction once a worker holds it (first attempt) and has reported rows scored."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = queue.job_of(resource_id)
        running = job is not None and job["state"] == "RUNNING"
        if running and api.get(f"/v1/batch-predictions/{resource_id}").json()["rows_scored"] > 0:
            assert job is not None and job["attempts"] == 1, job
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"no worker was seen scoring {resource_id}: its job is {queue.job_of(resource_id)}")


@contextmanager
def job_queue(database_url: str) -> Iterator[SqlJobQueue]:
    """The job queue of a running server's metadata store, to see which worker holds a job."""
    store = SqlMetadataStore(database_url, run_migrations=False)
    try:
        yield SqlJobQueue(store, 3)
    finally:
        store.dispose()


def assert_taken_over(queue: SqlJobQueue, resource_id: str, killed_pid: int) -> None:
    """The resource's job ran a second time, in another worker process than the one killed."""
    job = queue.job_of(resource_id)
    assert job is not None and job["attempts"] == 2 and int(job["owner"].split(":")[1]) != killed_pid, job
