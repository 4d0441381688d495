"""SQL datasources end to end: a query on the local MariaDB and PostgreSQL, staged as CSV in a local folder and in
the loopback S3, read like any CSV; through the REST API of a real server.

Covers the staged CSV's content (NULLs, decimals, dates, quoting), the schema and statistics, the password kept
out of every response, log line and row of the metadata store, the failures a person meets (bad password, syntax,
a write, an unknown table or database, no rows, repeated names, an unreachable port) and the servers a request may
reach; then a model trained on such a datasource.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import Engine

from mlsvc.client import Client
from mlsvc.config import Settings
from mlsvc.datasources.sql import cell, instance_address
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import SqlSource
from tests.rest import completed, error
from tests.servers import RunningServer, job_queue, start_server, stop_server, wait_done

MYSQL_ROOT = "mysql+pymysql://root@127.0.0.1:3306/test"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROWS = 3000
RUN = uuid.uuid4().hex[:8]
TABLE = f"mlsvc_sql_{RUN}"
READER = f"mlsvc_reader_{RUN}"
PASSWORD = f"Pw-{RUN}-never-shown"  # the MariaDB reader's; PostgreSQL's trust auth takes it and ignores it
PLANS = ("basic", "pro", "team")


# --- the data: the same rows in both databases ---


def expected_rows(booleans: bool) -> list[dict[str, Any]]:
    """The table's rows as Python values: ints, decimals with NULLs, doubles, text with NULLs, commas, quotes and
    line breaks, dates, and a 0/1 (MySQL) or boolean (PostgreSQL) target."""
    rows = []
    for i in range(1, ROWS + 1):
        tenure = (i * 7) % 72 + 1
        plan = None if i % 40 == 0 else PLANS[i % 3]
        churned = (tenure < 12 and plan == "basic") or i % 11 == 0
        rows.append(
            {
                "id": i,
                "tenure": tenure,
                "amount": None if i % 50 == 0 else (Decimal((i * 37) % 10000) / 100 + 5).quantize(Decimal("0.01")),
                "score": (i % 97) / 7.0,
                "plan": plan,
                "note": f'customer {i} wrote "fine, thanks"\nand left' if i % 5 == 0 else f"customer {i} stayed on",
                "signup": date(2024, 1, 1) + timedelta(days=i % 365),
                "churned": churned if booleans else int(churned),
            }
        )
    return rows


def create_table(engine: Engine, booleans: bool) -> None:
    flag = "BOOLEAN" if booleans else "TINYINT"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, tenure INT, amount DECIMAL(10, 2), "
                f"score DOUBLE PRECISION, plan VARCHAR(16), note TEXT, signup DATE, churned {flag})"
            )
        )
        conn.execute(
            text(f"INSERT INTO {TABLE} VALUES (:id, :tenure, :amount, :score, :plan, :note, :signup, :churned)"),
            expected_rows(booleans),
        )


@pytest.fixture(scope="module")
def mysql() -> Iterator[Engine]:
    """The table on MariaDB, and a reader who may only SELECT from it, with a password."""
    engine = create_engine(MYSQL_ROOT)
    create_table(engine, booleans=False)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE USER '{READER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'"))
        conn.execute(text(f"GRANT SELECT ON test.{TABLE} TO '{READER}'@'127.0.0.1'"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{READER}'@'127.0.0.1'"))
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Engine]:
    engine = create_engine(POSTGRES)
    create_table(engine, booleans=True)
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


@pytest.fixture(scope="module")
def server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of this module's, which names one MariaDB instance and one PostgreSQL "cluster"."""
    env = {
        "MLSVC_RDS_INSTANCES": "localdb=127.0.0.1:3306",
        "MLSVC_REDSHIFT_CLUSTERS": "localpg=127.0.0.1:5432",
        "MLSVC_SQL_HOSTS": "127.0.0.1,localhost",  # the hosts its requests name directly (any port)
    }
    running = start_server(tmp_path_factory.mktemp("sql-home"), env)
    yield running
    stop_server(running)


@pytest.fixture
def staging(tmp_path: Path) -> str:
    return str(tmp_path / "staged") + "/"


def mysql_source(staging_uri: str, query: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "engine": "mysql",
        "host": "127.0.0.1",
        "port": 3306,
        "database": "test",
        "username": READER,
        "password": PASSWORD,
        "query": query or f"SELECT * FROM {TABLE} ORDER BY id",
        "staging_uri": staging_uri,
        **overrides,
    }


def postgres_source(staging_uri: str, query: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "engine": "postgresql",
        "instance": "localpg",
        "database": "test",
        "username": "postgres",
        "password": PASSWORD,
        "query": query or f"SELECT * FROM {TABLE} ORDER BY id",
        "staging_uri": staging_uri,
        **overrides,
    }


def failed(api: httpx.Client, sql: dict[str, Any]) -> str:
    """Create a SQL datasource that must fail; its message, checked to hold no password."""
    response = api.post("/v1/datasources", json={"sql": sql})
    assert response.status_code == 202, response.text
    ds = wait_done(api, f"/v1/datasources/{response.json()['id']}", 120)
    assert ds["status"] == "FAILED", ds
    assert PASSWORD not in str(ds) and "Traceback" not in ds["message"]
    return str(ds["message"])


def staged_rows(content: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content)))


def expected_cells(booleans: bool) -> list[list[str]]:
    rows = expected_rows(booleans)
    return [list(rows[0])] + [[cell(v) for v in row.values()] for row in rows]


def assert_no_password_stored(server: RunningServer) -> None:
    """Not in any row of any table of the metadata store, nor in the server's log (its workers log there too)."""
    engine = create_engine(server.database_url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as conn:
            for table in tables.sorted_tables:
                for row in conn.execute(select(table)):
                    assert PASSWORD not in str(tuple(row)), f"the password is in {table.name}"
    finally:
        engine.dispose()
    assert PASSWORD not in server.log_text()


# --- from MariaDB to a local folder, from PostgreSQL to S3 ---


def test_a_mysql_query_becomes_a_datasource_staged_in_a_local_folder(
    api: httpx.Client, server: RunningServer, mysql: Engine, staging: str
) -> None:
    created = api.post(
        "/v1/datasources", json={"id": f"sql-my-{RUN}", "sql": mysql_source(staging), "target": "churned"}
    )
    assert created.status_code == 202, created.text
    pending = created.json()
    assert pending["data_uri"] == f"{staging}sql-my-{RUN}.csv"
    assert "password" not in pending["sql"] and pending["sql"]["username"] == READER
    ds = wait_done(api, f"/v1/datasources/sql-my-{RUN}")
    assert ds["status"] == "COMPLETED", ds["message"]

    assert ds["row_count"] == ds["rows_fetched"] == ROWS and ds["files"] == [ds["data_uri"]]
    assert staged_rows(Path(ds["data_uri"]).read_text()) == expected_cells(booleans=False)
    assert sorted(p.name for p in Path(staging).iterdir()) == [f"sql-my-{RUN}.csv"]  # no probe, no temporary file
    types = {a["attributeName"]: a["attributeType"] for a in ds["schema"]["attributes"]}
    assert types == {
        "id": "CATEGORICAL",  # the name says identifier; it is the row id
        "tenure": "NUMERIC",
        "amount": "NUMERIC",
        "score": "NUMERIC",
        "plan": "CATEGORICAL",
        "note": "TEXT",
        "signup": "CATEGORICAL",
        "churned": "BINARY",
    }
    assert ds["schema"]["rowId"] == "id" and ds["schema"]["targetAttributeName"] == "churned"
    stats = ds["statistics"]["attributes"]
    assert stats["amount"]["missing"] == ROWS // 50 and stats["plan"]["missing"] == ROWS // 40
    amounts = [r["amount"] for r in expected_rows(False) if r["amount"] is not None]
    assert stats["amount"]["min"] == pytest.approx(float(min(amounts)))
    assert stats["amount"]["max"] == pytest.approx(float(max(amounts)))
    churned = sum(r["churned"] for r in expected_rows(False))
    assert ds["statistics"]["target"]["class_counts"] == {"0": ROWS - churned, "1": churned}

    assert PASSWORD not in str(api.get("/v1/datasources").json())
    assert_no_password_stored(server)


def test_a_postgresql_query_on_a_configured_cluster_is_staged_in_s3(
    api: httpx.Client, server: RunningServer, postgres: Engine, s3_client: Any, s3_bucket: str
) -> None:
    staging = f"s3://{s3_bucket}/staging/"
    ds = completed(api, "/v1/datasources", {"sql": postgres_source(staging)})
    assert ds["data_uri"] == f"{staging}{ds['id']}.csv" and ds["row_count"] == ROWS
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == [f"staging/{ds['id']}.csv"]
    body = s3_client.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode()
    assert staged_rows(body) == expected_cells(booleans=True)
    types = {a["attributeName"]: a["attributeType"] for a in ds["schema"]["attributes"]}
    assert types["churned"] == "BINARY" and types["amount"] == "NUMERIC" and types["plan"] == "CATEGORICAL"
    assert ds["sql"]["instance"] == "localpg" and ds["sql"]["host"] is None
    assert_no_password_stored(server)


def test_a_model_trains_on_a_sql_datasource(api: httpx.Client, mysql: Engine, staging: str) -> None:
    ds = completed(api, "/v1/datasources", {"sql": mysql_source(staging), "target": "churned"})
    model = completed(
        api,
        "/v1/models",
        {
            "name": f"sql-churn-{RUN}",
            "datasource_id": ds["id"],
            "time_budget_s": 10,
            "candidates": [{"family": "linear"}],
        },
        timeout=300,
    )
    assert model["model_type"] == "BINARY" and model["metrics"]
    prediction = api.post(
        f"/v1/models/{model['id']}/predict",
        json={"record": {"tenure": 3, "amount": 20.5, "score": 1.0, "plan": "basic", "signup": "2024-02-01"}},
    )
    assert prediction.status_code == 200, prediction.text
    assert prediction.json()["predictions"][0]["predicted_label"] in ("0", "1")


def test_a_retry_with_another_password_is_the_same_request(api: httpx.Client, mysql: Engine, staging: str) -> None:
    ds_id, source = f"sql-retry-{RUN}", mysql_source(staging)
    first = api.post("/v1/datasources", json={"id": ds_id, "sql": source})
    assert first.status_code == 202, first.text
    again = api.post("/v1/datasources", json={"id": ds_id, "sql": {**source, "password": "another one"}})
    assert again.status_code == 200 and again.json()["id"] == ds_id, again.text
    other = api.post("/v1/datasources", json={"id": ds_id, "sql": {**source, "query": "SELECT 1 AS one"}})
    error(other, 409, "conflict")
    assert wait_done(api, f"/v1/datasources/{ds_id}")["status"] == "COMPLETED"


def test_the_sdk_sends_a_sql_source_with_its_password(server: RunningServer, mysql: Engine, staging: str) -> None:
    with Client(server.url, timeout=30) as client:
        ds = client.datasources.create(sql=SqlSource.model_validate(mysql_source(staging)), target="churned")
        ds = client.datasources.wait(ds, timeout=120)  # the reader's password reached the job: it connected
    assert ds.sql is not None and ds.sql.username == READER and ds.row_count == ROWS
    assert not hasattr(ds.sql, "password") and PASSWORD not in ds.model_dump_json()


# --- what fails, and says why ---


def test_bad_credentials_and_unknown_databases_fail_with_what_to_check(
    api: httpx.Client, mysql: Engine, staging: str
) -> None:
    message = failed(api, mysql_source(staging, password="wrong-" + PASSWORD[:4]))
    assert "Access denied for user" in message and "check the username and password" in message
    # root, who may see every database: the reader would be told access is denied, not that it does not exist
    message = failed(api, mysql_source(staging, database="no_such_db", username="root", password=None))
    assert "no_such_db" in message and "check the database name" in message
    message = failed(api, postgres_source(staging, database="no_such_db"))
    assert 'database "no_such_db" does not exist' in message and "check the database name" in message
    message = failed(api, mysql_source(staging, port=1))
    assert "cannot connect to MySQL at 127.0.0.1:1" in message and "check the host and port" in message


def test_bad_queries_fail_with_the_database_s_words(
    api: httpx.Client, mysql: Engine, postgres: Engine, staging: str
) -> None:
    assert "error in your SQL syntax" in failed(api, mysql_source(staging, f"SELEC * FROM {TABLE}"))
    assert 'syntax error at or near "SELEC"' in failed(api, postgres_source(staging, f"SELEC * FROM {TABLE}"))
    assert f"Table 'test.no_such_{RUN}' doesn't exist" in failed(
        api, mysql_source(staging, f"SELECT * FROM no_such_{RUN}", username="root", password=None)
    )
    assert f'relation "no_such_{RUN}" does not exist' in failed(
        api, postgres_source(staging, f"SELECT * FROM no_such_{RUN}")
    )
    message = failed(api, mysql_source(staging, f"SELECT id, tenure AS id FROM {TABLE}"))
    assert "the column name(s) ['id'] more than once" in message and "AS" in message
    message = failed(api, postgres_source(staging, f"SELECT * FROM {TABLE} WHERE id < 0"))
    assert "the query returned no rows" in message
    assert not list(Path(staging).glob("*.csv"))  # nothing published for a failed query


def test_a_statement_that_writes_is_refused_and_writes_nothing(
    api: httpx.Client, mysql: Engine, postgres: Engine, staging: str
) -> None:
    root = {"username": "root", "password": None}  # who may write, were the transaction not read-only
    for statement in (f"DELETE FROM {TABLE}", f"DROP TABLE {TABLE}", f"UPDATE {TABLE} SET tenure = 0"):
        message = failed(api, mysql_source(staging, statement, **root))
        assert "must only read" in message and "READ ONLY transaction" in message, message
    message = failed(api, postgres_source(staging, f"DELETE FROM {TABLE}"))
    assert "must only read" in message and 'syntax error at or near "DELETE"' in message
    message = failed(api, postgres_source(staging, f"SELECT * FROM {TABLE} FOR UPDATE"))
    assert "must only read" in message and "read-only transaction" in message
    for engine in (mysql, postgres):
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT COUNT(*), SUM(tenure) FROM {TABLE}")).one() == (
                ROWS,
                sum(r["tenure"] for r in expected_rows(False)),
            )


def test_servers_a_request_may_not_reach_are_refused_at_create(api: httpx.Client, staging: str) -> None:
    far = mysql_source(staging, host="db.example.com")
    message = error(api.post("/v1/datasources", json={"sql": far}), 403, "host_not_allowed")
    assert "db.example.com:3306" in message and "MLSVC_SQL_HOSTS" in message and "MLSVC_RDS_INSTANCES" in message
    unknown = postgres_source(staging, instance="nowhere")
    message = error(api.post("/v1/datasources", json={"sql": unknown}), 422, "validation_error")
    assert "'nowhere'" in message and "MLSVC_REDSHIFT_CLUSTERS" in message and "localpg" in message
    assert api.get("/v1/datasources", params={"name_prefix": "nowhere"}).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"data_uri": "x.csv", "sql": "SQL"}, "exactly one of 'data_uri'"),
        ({"target": "churned"}, "exactly one of 'data_uri'"),
        ({"sql": {"port": 3306, "host": None}}, "either 'instance'"),
        ({"sql": {"instance": "localdb"}}, "either 'instance'"),
        ({"sql": {"query": ""}}, "sql.query"),
        ({"sql": {"query": "x" * 1_000_001}}, "sql.query"),
        ({"sql": {"engine": "oracle"}}, "sql.engine"),
        ({"sql": {"extra": 1}}, "sql.extra: unknown field"),
    ],
)
def test_malformed_sql_requests_are_422_without_the_password(
    api: httpx.Client, staging: str, body: dict[str, Any], fragment: str
) -> None:
    if body.get("sql") == "SQL":
        body = {**body, "sql": mysql_source(staging)}
    elif "sql" in body:
        body = {**body, "sql": {**mysql_source(staging), **body["sql"]}}
    response = api.post("/v1/datasources", json=body)
    message = error(response, 422, "validation_error")
    assert fragment in message and PASSWORD not in response.text


def test_a_staging_place_that_cannot_be_written_fails_before_the_query_runs(api: httpx.Client, mysql: Engine) -> None:
    message = failed(api, mysql_source(f"s3://no-such-bucket-{RUN}/staging/"))
    assert f"the staging location s3://no-such-bucket-{RUN}/staging/ cannot be written" in message
    assert "the query was not run" in message and f"bucket 'no-such-bucket-{RUN}' does not exist" in message


def test_deleting_a_sql_datasource_drops_its_password(
    api: httpx.Client, server: RunningServer, mysql: Engine, staging: str
) -> None:
    ds_id = api.post("/v1/datasources", json={"sql": mysql_source(staging)}).json()["id"]
    assert api.delete(f"/v1/datasources/{ds_id}").json()["status"] == "DELETED"
    with job_queue(server.database_url) as queue:  # whether its job had not started, ran, or was stopped
        deadline = time.monotonic() + 60
        while (job := queue.job_of(ds_id)) is not None and job["state"] in ("QUEUED", "RUNNING"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    assert_no_password_stored(server)


def test_staging_in_the_service_s_own_files_is_refused(api: httpx.Client, server: RunningServer) -> None:
    response = api.post("/v1/datasources", json={"sql": mysql_source(str(server.home / "stage"))})
    assert error(response, 403, "path_not_allowed")


# --- the parts, without a server ---


def test_values_become_cells_that_read_back() -> None:
    assert [cell(v) for v in (None, "", True, False, 7, -0.1, Decimal("1E+3"), Decimal("-2.50"))] == [
        "",
        "",
        "true",
        "false",
        "7",
        "-0.1",
        "1000",
        "-2.50",
    ]
    assert cell(date(2024, 2, 29)) == "2024-02-29" and cell(timedelta(days=-2, seconds=82799)) == "-25:00:01"
    assert cell(b"plain text") == "plain text" and cell(b"\x00\xff") == "\\x00ff" and cell({"a": [1]}) == '{"a": [1]}'


def test_configured_instances_are_looked_up_by_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSVC_RDS_INSTANCES", "prod=db1.internal:3307, replica=db2.internal")
    monkeypatch.setenv("MLSVC_REDSHIFT_CLUSTERS", "warehouse=[::1]:5439")
    settings = Settings.from_env()
    assert instance_address(settings, "mysql", "prod") == ("db1.internal", 3307)
    assert instance_address(settings, "mysql", "replica") == ("db2.internal", 3306)
    assert instance_address(settings, "postgresql", "warehouse") == ("::1", 5439)
    with pytest.raises(MlsvcError) as raised:
        instance_address(settings, "postgresql", "prod")
    assert raised.value.code is ErrorCode.VALIDATION_ERROR and "configures these: warehouse" in raised.value.message
    monkeypatch.setenv("MLSVC_SQL_HOSTS", "bad=value")
    monkeypatch.setenv("MLSVC_RDS_INSTANCES", "nohost")
    with pytest.raises(ValueError, match="MLSVC_RDS_INSTANCES: 'nohost' is not name=host:port"):
        Settings.from_env()
