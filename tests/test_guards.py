"""The guards in front of every route, on the real app: Host names, load shedding, readiness, the 401's
challenge, and the refusal to serve other hosts without a key."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlsvc.config import Settings
from mlsvc.metadata.sql import utcnow
from mlsvc.server.app import create_app
from tests.apps import http_client
from tests.inprocess import serving, settings_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path, allowed_hosts=("localhost", "127.0.0.1", "::1"))


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"])
def test_loopback_hosts_are_answered(settings: Settings, host: str) -> None:
    with http_client(create_app(settings)) as client:
        assert client.get("/v1/models", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8080", "127.0.0.1.nip.io"])
def test_other_hosts_are_refused(settings: Settings, host: str) -> None:
    with http_client(create_app(settings)) as client:
        response = client.get("/v1/models", headers={"host": host})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "host_not_allowed" and "MLSVC_ALLOWED_HOSTS" in error["message"]


def test_any_host_when_configured(tmp_path: Path) -> None:
    with http_client(create_app(settings_for(tmp_path, allowed_hosts=("*",)))) as client:
        assert client.get("/v1/models", headers={"host": "mlsvc.internal:8080"}).status_code == 200


def test_the_default_follows_the_bind_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSVC_ALLOWED_HOSTS", raising=False)
    monkeypatch.setenv("MLSVC_HOST", "127.0.0.1")
    assert Settings.from_env().allowed_hosts == ("localhost", "127.0.0.1", "::1")
    monkeypatch.setenv("MLSVC_HOST", "0.0.0.0")
    assert Settings.from_env().allowed_hosts == ("*",)
    monkeypatch.setenv("MLSVC_ALLOWED_HOSTS", "mlsvc.example.com, api.example.com")
    assert Settings.from_env().allowed_hosts == ("mlsvc.example.com", "api.example.com")


def test_a_401_names_its_scheme(tmp_path: Path) -> None:
    with http_client(create_app(settings_for(tmp_path, api_key="k"))) as client:
        response = client.get("/v1/models")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="mlsvc"'
        assert client.get("/readyz").status_code == 401  # readiness is behind the key; liveness is not
        assert client.get("/healthz").status_code == 200


def test_ready_on_a_fresh_service(settings: Settings) -> None:
    with http_client(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    checks = {"metadata": "ok", "registry": "ok", "artifacts": "ok"}
    assert response.json() == {"status": "ready", "checks": checks}


def test_not_ready_while_a_production_model_cannot_load(settings: Settings) -> None:
    app = create_app(settings)
    store = app.state.service.planes.metadata
    now = utcnow()
    record = {
        "id": "ml-gone",
        "name": "churn",
        "status": "COMPLETED",
        "message": "",
        "progress": 1.0,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "datasource_id": "ds-x",
        "model_type": "BINARY",
        "model_uri": "models:/churn/1",
        "features": [],
        "classes": ["no", "yes"],
    }
    store.create("model", record, "test", {}, None)
    store.set_alias("churn", "production", 1)
    with http_client(app) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").json() == {"status": "ok"}  # liveness stays trivial
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready" and body["checks"]["metadata"] == "ok"
    assert body["checks"]["model churn:production"] != "ok"


def test_overload_is_shed_with_retry_after_and_recovers(settings: Settings) -> None:
    app = create_app(Settings(**{**settings.__dict__, "max_in_flight": 2}))
    held, entered = threading.Event(), threading.Semaphore(0)
    real_list = app.state.service.datasources.list

    def slow_list(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        held.wait(30)
        return real_list(*args, **kwargs)

    app.state.service.datasources.list = slow_list
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        holding = [pool.submit(client.get, "/v1/datasources") for _ in range(2)]
        for _ in range(2):
            assert entered.acquire(timeout=30)  # both slots are taken by requests inside the app
        refused = [client.get("/v1/datasources") for _ in range(5)]
        assert client.get("/healthz").status_code == 200  # health and metrics still answer
        assert client.get("/metrics").status_code == 200
        held.set()
        assert [f.result().status_code for f in holding] == [200, 200]
        assert client.get("/v1/datasources").status_code == 200  # and then it serves again
    assert {r.status_code for r in refused} == {503}
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["error"]["code"] == "unavailable"


def test_serve_refuses_other_hosts_without_a_key(tmp_path: Path) -> None:
    env = {**os.environ, "MLSVC_HOME": str(tmp_path), "MLSVC_HOST": "0.0.0.0", "MLSVC_PORT": "1"}
    env.pop("MLSVC_API_KEY", None)
    env.pop("MLSVC_ALLOW_ANONYMOUS", None)
    done = subprocess.run(
        [sys.executable, "-m", "mlsvc.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "without an API key" in done.stderr and "MLSVC_ALLOW_ANONYMOUS" in done.stderr


def test_settings_say_when_anonymous_access_was_asked_for(settings: Settings) -> None:
    open_settings = Settings(**{**settings.__dict__, "host": "0.0.0.0", "allow_anonymous": True})
    assert open_settings.refusal_to_serve() is None
    assert "anyone who can reach the port" in open_settings.describe("a test")
    assert Settings(**{**settings.__dict__, "host": "0.0.0.0"}).refusal_to_serve() is not None
    assert Settings(**{**settings.__dict__, "host": "0.0.0.0", "api_key": "k"}).refusal_to_serve() is None
