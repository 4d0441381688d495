"""The real app in the test's own process, for the few tests that must change a part of it (a service method
that raises, a compiler that refuses): its settings, and serving it over a real loopback socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from mlsvc.config import Settings
from tests.servers import free_port


def settings_for(home: Path, **overrides: Any) -> Settings:
    """The settings `mlsvc serve` would take with MLSVC_HOME=home: the store and MLflow under it, no API key."""
    base = Settings.from_env()
    tracking = f"sqlite:///{home / 'mlflow.db'}"
    return Settings(
        **{
            **base.__dict__,
            "home": home,
            "database_url": f"sqlite:///{home / 'mlsvc.db'}",
            "mlflow_tracking_uri": tracking,
            "mlflow_registry_uri": tracking,
            "mlflow_artifact_root": (home / "mlartifacts").as_uri(),
            "local_roots": (),
            "api_key": None,
            "job_poll_s": 0.05,
            **overrides,
        }
    )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; its base URL while the block runs."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
