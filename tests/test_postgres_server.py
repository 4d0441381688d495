"""`mlsvc serve` with its metadata store on PostgreSQL (MLSVC_DATABASE_URL): a datasource, a model trained and
served, through HTTP, with the resources in that database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.datasets import iris_csv
from tests.rest import completed, error
from tests.scoring import assert_served_as_registered, registered_pipeline
from tests.servers import RunningServer, start_server, stop_server
from tests.stores import fresh_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    with fresh_postgres(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def server(s3_server: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The URL as a user writes it, without naming the driver.
    plain = "postgresql://" + database_url.split("://", 1)[1]
    running = start_server(tmp_path_factory.mktemp("pg-home"), {"MLSVC_DATABASE_URL": plain}, workers=1)
    yield running
    stop_server(running)


def test_a_model_trained_and_served_on_postgresql(
    api: httpx.Client, server: RunningServer, database_url: str, tmp_path: Path
) -> None:
    ds = completed(api, "/v1/datasources", {"data_uri": str(iris_csv(tmp_path)), "target": "species"})
    assert ds["row_count"] == 150
    model: dict[str, Any] = completed(
        api, "/v1/models", {"name": "iris-pg", "datasource_id": ds["id"], "time_budget_s": 1}
    )
    assert model["version"] == 1 and model["aliases"] == ["production"]
    records = [{"petal_length": 1.4, "petal_width": 0.2}, {"petal_length": 5.8, "petal_width": 2.2}]
    answer = api.post("/v1/models/iris-pg:production/predict", json={"records": records}).json()
    assert answer["model_id"] == model["id"]
    assert_served_as_registered(registered_pipeline(server, model), model, records, answer["predictions"])
    error(api.post("/v1/models/iris-pg:2/predict", json={"records": records}), 404, "not_found")
    # The resources, the job and the alias are rows of the PostgreSQL database, not of a SQLite file.
    assert not (server.home / "mlsvc.db").exists()
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM models WHERE id = :id"), {"id": model["id"]}).scalar_one() == (
            "COMPLETED"
        )
        jobs = [tuple(row) for row in conn.execute(sa.text("SELECT kind, state FROM jobs ORDER BY id"))]
        alias = conn.execute(sa.text("SELECT version FROM model_aliases WHERE name = 'iris-pg'")).scalar_one()
    engine.dispose()
    assert [state for _, state in jobs] == ["DONE", "DONE"] and alias == 1
