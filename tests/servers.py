"""Pytest plugin: the real `mlsvc serve` in a subprocess on a free loopback port, with its own MLSVC_HOME."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'mlsvc.db'}"

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
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlsvc.cli", "serve"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", home, process, log)
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


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(5)


@pytest.fixture(scope="session")
def mlsvc_server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the session (it inherits the loopback S3 endpoint from the environment)."""
    server = start_server(tmp_path_factory.mktemp("mlsvc-home"))
    yield server
    stop_server(server)


def wait_done(api: httpx.Client, path: str, timeout: float = 180) -> dict:
    """Poll a resource until its job finished (COMPLETED or FAILED) and return it."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = api.get(path).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} still {body.get('status')} after {timeout:.0f} s")
