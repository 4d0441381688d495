"""mlsvc's own files (its databases, MLflow's store and artifacts, staging areas) are never data, whatever the
roots: through the REST API of an app whose home lies inside the data folder, and with every path allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.server.app import create_app
from tests.apps import http_client
from tests.inprocess import settings_for


@pytest.fixture(params=["data-root", "every-path"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    home = tmp_path / "home"
    roots = (tmp_path,) if request.param == "data-root" else ()
    settings = settings_for(home, mlflow_artifact_root=(tmp_path / "artifacts").as_uri(), local_roots=roots)
    home.mkdir()
    model_files = tmp_path / "artifacts" / "1" / "models" / "m-1" / "artifacts"
    model_files.mkdir(parents=True)
    (model_files / "input_example.csv").write_text("a\n1\n")
    (home / "notes.csv").write_text("a\n1\n")
    app = create_app(settings)
    with http_client(app) as client:
        client.app = app  # type: ignore[attr-defined]  # the planes behind it, for the checks below
        yield client, tmp_path
    app.state.service.close()


def _refused(response_json: dict[str, object]) -> str:
    error = response_json["error"]
    assert isinstance(error, dict) and error["code"] == "path_not_allowed", error
    return str(error["message"])


@pytest.mark.parametrize(
    "place",
    [
        "home/mlsvc.db",
        "home/mlsvc.db-wal",
        "home/mlflow.db",
        "home/notes.csv",
        "artifacts/1/models/m-1/artifacts/input_example.csv",
        "artifacts/1/models/",
    ],
)
def test_no_datasource_reads_the_services_own_files(api: tuple[httpx.Client, Path], place: str) -> None:
    client, root = api
    for uri in (str(root / place), (root / place).as_uri()):
        response = client.post("/v1/datasources", json={"data_uri": uri})
        assert response.status_code == 403, response.text
        message = _refused(response.json())
        assert "own files" in message and "SQLite" not in message


def test_a_symlink_into_the_home_is_refused_too(api: tuple[httpx.Client, Path]) -> None:
    client, root = api
    (root / "innocent.csv").symlink_to(root / "home" / "mlsvc.db")
    response = client.post("/v1/datasources", json={"data_uri": str(root / "innocent.csv")})
    assert response.status_code == 403
    assert "own files" in _refused(response.json())


def test_no_output_and_no_job_write_goes_into_them(api: tuple[httpx.Client, Path]) -> None:
    client, root = api
    planes = client.app.state.service.planes  # type: ignore[attr-defined]
    for output in ("artifacts/1/models/m-1/artifacts/out.csv.gz", "home/out/x.csv"):
        with pytest.raises(MlsvcError) as info:
            planes.uris.check(str(root / output))  # what a batch prediction's output_uri goes through
        assert info.value.code == ErrorCode.PATH_NOT_ALLOWED
        with pytest.raises(MlsvcError), planes.objects.open_write(str(root / output)) as out:  # what a job writes with
            out.write(b"x")
    assert not (root / "home" / "out").exists()


def test_a_staging_folder_is_not_an_output_or_data(api: tuple[httpx.Client, Path]) -> None:
    client, root = api
    (root / "out" / "batch-prediction" / ".staging").mkdir(parents=True)
    uri = str(root / "out" / "batch-prediction" / ".staging" / "x.csv")
    response = client.post("/v1/datasources", json={"data_uri": uri})
    assert response.status_code == 403
    assert ".staging" in _refused(response.json())


def test_a_folder_holding_the_home_lists_only_the_callers_data(api: tuple[httpx.Client, Path]) -> None:
    client, root = api
    (root / "data.csv").write_text("a,b\n1,2\n")
    objects = client.app.state.service.planes.objects  # type: ignore[attr-defined]
    assert [f.uri for f in objects.list_data_files(str(root) + "/")] == [str(root / "data.csv")]
