"""No model artifact is deserialized unverified: a version's files are digested when it is registered (signed with
the server key), and a tampered or corrupted file refuses the load on every path (real-time, batch, evaluation, a
worker's cold load of the production version), with a message naming the version and the file, a count in
/metrics, a log line and a failing readiness check. Nothing of the tampered file is ever unpickled."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.security.integrity import tree_digests
from mlsvc.server.app import create_app
from tests.datasets import iris_csv
from tests.inprocess import serving, settings_for
from tests.rest import completed, error
from tests.servers import RunningServer, start_server, stop_server, wait_done

KEY = "integrity-test-secret"
RECORDS = [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]


class Marker:
    """A pickle that creates a file when it is unpickled: the harmless stand-in for an attacker's payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own (its readiness will fail once a load was refused), with a server key."""
    server = start_server(tmp_path_factory.mktemp("integrity-home"), {"MLSVC_SECRET_KEY": KEY})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def api(signed_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=signed_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def iris(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = iris_csv(tmp_path_factory.mktemp("integrity-data"))
    return completed(api, "/v1/datasources", {"data_uri": str(path), "target": "species"})


def _train(api: httpx.Client, name: str, datasource: dict[str, Any]) -> dict[str, Any]:
    body = {"name": name, "datasource_id": datasource["id"], "time_budget_s": 1}
    return completed(api, "/v1/models", body)


def _files(server: RunningServer, model: dict[str, Any]) -> Path:
    """The version's model folder in the server's MLflow artifact store."""
    [folder] = server.home.glob(f"mlartifacts/**/{model['mlflow_run_id']}/artifacts/model")
    return folder


def _stored(server: RunningServer, model_id: str) -> dict[str, Any]:
    store = SqlMetadataStore(server.database_url, run_migrations=False)
    try:
        return store.get("model", model_id)
    finally:
        store.dispose()


def _swap_in_pickle(folder: Path, marker: Path) -> None:
    """What an attacker with write access to the artifact store does: a pickle payload, and an MLmodel that
    tells MLflow to unpickle it."""
    (folder / "model.pkl").write_bytes(pickle.dumps(Marker(marker)))
    mlmodel = (folder / "MLmodel").read_text()
    mlmodel = mlmodel.replace("pickled_model: model.skops", "pickled_model: model.pkl")
    (folder / "MLmodel").write_text(mlmodel.replace("serialization_format: skops", "serialization_format: cloudpickle"))
    (folder / "model.skops").unlink()


@pytest.fixture
def fresh_app_url(signed_server: RunningServer) -> Iterator[str]:
    """The app in this process over the server's store and registry: its first predict is a cold load."""
    app = create_app(settings_for(signed_server.home, local_roots=(Path("/"),), secret_key=KEY))
    with serving(app) as url:
        yield url
    app.state.service.close()


def test_a_version_records_the_digest_of_every_file_it_registered(
    signed_server: RunningServer, api: httpx.Client, iris: dict[str, Any]
) -> None:
    model = _train(api, "iris-sealed", iris)
    stored = _stored(signed_server, model["id"])
    folder = _files(signed_server, model)
    assert stored["artifact_digests"] == tree_digests(folder)
    assert {"MLmodel", "model.skops"} <= set(stored["artifact_digests"])
    assert not (folder / "model.pkl").exists()  # skops' format, never a pickle
    assert isinstance(stored["artifact_signature"], str) and len(stored["artifact_signature"]) == 64
    assert "artifact_digests" not in api.get(f"/v1/models/{model['id']}").json()  # internal, not the API's


def test_a_tampered_pickle_is_refused_on_every_load_path(
    signed_server: RunningServer,
    api: httpx.Client,
    iris: dict[str, Any],
    fresh_app_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = _train(api, "iris-tampered", iris)
    assert model["promotion"]["promoted"] is True
    marker = tmp_path / "payload-ran"
    _swap_in_pickle(_files(signed_server, model), marker)

    # Real time, a cold load in another process.
    with httpx.Client(base_url=fresh_app_url, timeout=60) as local:
        message = error(
            local.post(f"/v1/models/{model['id']}/predict", json={"records": RECORDS}), 503, "artifact_integrity"
        )
    assert "iris-tampered:1" in message and "model.pkl was added" in message and "model.skops is missing" in message
    assert any("refused to load model iris-tampered:1" in r.getMessage() for r in caplog.records)

    # Batch and evaluation, in the server's workers.
    out = tmp_path / "out"
    batch = api.post(
        "/v1/batch-predictions",
        json={"model": "iris-tampered", "datasource_id": iris["id"], "output_uri": str(out) + "/"},
    )
    assert batch.status_code == 202, batch.text
    evaluation = api.post("/v1/evaluations", json={"model": "iris-tampered", "datasource_id": iris["id"]})
    assert evaluation.status_code == 202, evaluation.text
    for path in (f"/v1/batch-predictions/{batch.json()['id']}", f"/v1/evaluations/{evaluation.json()['id']}"):
        ended = wait_done(api, path)
        assert ended["status"] == "FAILED" and "iris-tampered:1" in ended["message"], ended
        assert "model.pkl was added" in ended["message"]
    assert not out.exists() or not any(out.rglob("*.gz"))

    # A worker's cold load of the production version, when a new version is compared with it.
    challenger = _train(api, "iris-tampered", iris)
    assert challenger["promotion"]["promoted"] is True
    assert "v1 could not score these rows" in challenger["promotion"]["reason"]
    assert "model.pkl was added" in challenger["promotion"]["reason"]

    assert not marker.exists()  # nothing was unpickled, on any path
    assert "refused to load model iris-tampered:1" in signed_server.log_text()
    metrics = api.get("/metrics").text
    refused = [line for line in metrics.splitlines() if line.startswith("mlsvc_artifact_integrity_failures ")]
    assert refused and float(refused[0].split()[-1]) >= 4
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert "refused" in ready.json()["checks"]["artifacts"]


def test_corrupted_bytes_and_rewritten_digests_are_refused(
    signed_server: RunningServer, api: httpx.Client, iris: dict[str, Any], fresh_app_url: str
) -> None:
    model = _train(api, "iris-corrupted", iris)
    folder = _files(signed_server, model)
    skops_file = folder / "model.skops"
    data = bytearray(skops_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    path = f"/v1/models/{model['id']}/predict"
    with httpx.Client(base_url=fresh_app_url, timeout=60) as local:
        message = error(local.post(path, json={"records": RECORDS}), 503, "artifact_integrity")
    assert "model.skops is not the file registered" in message
    # Someone who can also write the metadata store records the new digests: the signature no longer matches.
    store = SqlMetadataStore(signed_server.database_url, run_migrations=False)
    try:
        store.update("model", model["id"], {"artifact_digests": tree_digests(folder)})
    finally:
        store.dispose()
    app = create_app(settings_for(signed_server.home, local_roots=(Path("/"),), secret_key=KEY))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=60) as local:
            message = error(local.post(path, json={"records": RECORDS}), 503, "artifact_integrity")
    finally:
        app.state.service.close()
    assert "valid signature" in message and "MLSVC_SECRET_KEY" in message
