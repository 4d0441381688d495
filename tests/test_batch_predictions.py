"""Batch predictions over real HTTP and the loopback S3: Amazon ML's output layout, a manifest written last,
agreement with real-time predictions, invalid rows, bad requests, and a worker killed mid-job."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore
from tests.servers import REPO, RunningServer, start_server, stop_server, wait_done

CHURN = REPO / "datasources" / "churn.csv"


def _create(api: httpx.Client, path: str, body: dict) -> dict:
    response = api.post(path, json=body)
    assert response.status_code == 202, response.text
    done = wait_done(api, f"{path}/{response.json()['id']}")
    assert done["status"] == "COMPLETED", done["message"]
    return done


def _read_gz(s3: Any, uri: str) -> pd.DataFrame:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pd.read_csv(io.BytesIO(gzip.decompress(data)), dtype={"customer_id": str, "bestAnswer": str})


@pytest.fixture(scope="module")
def server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose batch jobs score in a pool of two processes (the parallel path)."""
    running = start_server(tmp_path_factory.mktemp("batch-home"), {"MLSVC_BATCH_PROCESSES": "2"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    name = f"batch-{int(time.time() * 1000)}"
    s3_client.create_bucket(Bucket=name)
    s3_client.upload_file(str(CHURN), name, "in/churn.csv")
    s3_client.upload_file(str(CHURN) + ".schema", name, "in/churn.csv.schema")
    return name


@pytest.fixture(scope="module")
def churn(api: httpx.Client, bucket: str) -> dict:
    ds = _create(api, "/v1/datasources", {"data_uri": f"s3://{bucket}/in/churn.csv"})
    model = _create(api, "/v1/models", {"name": "churn-batch", "datasource_id": ds["id"], "time_budget_s": 3})
    return {"ds": ds, "model": model}


def test_batch_over_a_datasource_writes_amazon_ml_layout_and_a_manifest(
    api: httpx.Client, churn: dict, bucket: str, s3_client: Any
) -> None:
    body = {"model": "churn-batch", "datasource_id": churn["ds"]["id"], "output_uri": f"s3://{bucket}/out/"}
    bp = _create(api, "/v1/batch-predictions", body)
    assert bp["rows_scored"] == 5000 and bp["rows_total"] == 5000 and bp["progress"] == 1.0
    [output] = bp["outputs"]
    assert output["input"] == f"s3://{bucket}/in/churn.csv" and output["rows"] == 5000
    assert output["output"] == f"s3://{bucket}/out/batch-prediction/result/{bp['id']}-churn.csv.gz"
    manifest = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"out/batch-prediction/{bp['id']}.manifest")["Body"].read()
    )
    assert manifest == {output["input"]: output["output"]}
    frame = _read_gz(s3_client, output["output"])
    assert list(frame.columns) == ["customer_id", "bestAnswer", "score"] and len(frame) == 5000
    source = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    assert list(frame["customer_id"]) == list(source["customer_id"])
    assert set(frame["bestAnswer"]) <= {"yes", "no"}
    assert ((frame["score"] >= 0.5) == (frame["bestAnswer"] == "yes")).all()
    # The same rows scored in real time give the same scores.
    records = source.drop(columns=["customer_id", "churned"]).head(20).to_dict("records")
    live = api.post("/v1/models/churn-batch/predict", json={"records": records}).json()["predictions"]
    np.testing.assert_allclose(frame["score"].head(20), [p["predicted_scores"]["yes"] for p in live], atol=1e-9)
    staged = s3_client.list_objects_v2(Bucket=bucket, Prefix="out/batch-prediction/.staging/")
    assert staged.get("KeyCount", 0) == 0  # nothing left under temporary names


def test_batch_over_a_csv_with_a_row_id_and_invalid_rows(api: httpx.Client, churn: dict, tmp_path: Path) -> None:
    source = pd.read_csv(CHURN, dtype=str, keep_default_na=False).head(300)
    source.loc[5, "tenure_months"] = "soon"  # an invalid value: scored as missing, counted
    text = source.drop(columns=["churned"]).to_csv(index=False)
    lines = text.splitlines()
    lines.insert(10, "ragged,row")  # a row that cannot be read: counted, reported, not scored
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "customers.csv").write_text("\n".join(lines) + "\n")
    body = {
        "model": "churn-batch",
        "data_uri": str(tmp_path / "in"),
        "row_id": "customer_id",
        "output_uri": str(tmp_path / "out"),
    }
    bp = _create(api, "/v1/batch-predictions", body)
    assert bp["rows_scored"] == 300 and bp["invalid_row_count"] == 1 and bp["rows_with_invalid_values"] == 1
    assert "line 11" in bp["invalid_examples"][0]
    [output] = bp["outputs"]
    frame = pd.read_csv(output["output"], dtype={"customer_id": str})
    assert list(frame["customer_id"]) == list(source["customer_id"]) and len(frame) == 300
    assert Path(bp["manifest_uri"]).exists()


def test_multiclass_and_regression_layouts(api: httpx.Client, tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    frame = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = np.array(iris.target_names)[iris.target]
    frame.to_csv(tmp_path / "iris.csv", index=False)
    ds = _create(api, "/v1/datasources", {"data_uri": str(tmp_path / "iris.csv"), "target": "species"})
    _create(api, "/v1/models", {"name": "iris-batch", "datasource_id": ds["id"], "time_budget_s": 2})
    bp = _create(
        api,
        "/v1/batch-predictions",
        {"model": "iris-batch", "datasource_id": ds["id"], "output_uri": str(tmp_path / "out")},
    )
    out = pd.read_csv(bp["outputs"][0]["output"])
    assert list(out.columns) == ["setosa", "versicolor", "virginica"] and len(out) == 150
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)

    frame = frame.drop(columns=["species"])
    frame.to_csv(tmp_path / "petals.csv", index=False)
    ds = _create(api, "/v1/datasources", {"data_uri": str(tmp_path / "petals.csv"), "target": "petal_width"})
    _create(api, "/v1/models", {"name": "petal-batch", "datasource_id": ds["id"], "time_budget_s": 2})
    bp = _create(
        api,
        "/v1/batch-predictions",
        {"model": "petal-batch", "datasource_id": ds["id"], "output_uri": str(tmp_path / "out2")},
    )
    out = pd.read_csv(bp["outputs"][0]["output"])
    assert list(out.columns) == ["score"] and len(out) == 150


def test_bad_batch_requests(api: httpx.Client, churn: dict, tmp_path: Path) -> None:
    def error(body: dict) -> tuple[int, str]:
        response = api.post("/v1/batch-predictions", json=body)
        return response.status_code, response.json()["error"]["code"]

    base = {"model": "churn-batch", "datasource_id": churn["ds"]["id"], "output_uri": str(tmp_path)}
    assert error({**base, "model": "nope"}) == (404, "not_found")
    assert error({**base, "output_uri": "ftp://x/y/"}) == (400, "unsupported_uri")
    assert error({**base, "data_uri": str(CHURN)}) == (422, "validation_error")
    assert error({**base, "datasource_id": "nope"}) == (404, "not_found")
    partial = tmp_path / "partial.csv"
    pd.read_csv(CHURN).drop(columns=["tenure_months", "contract"]).head(50).to_csv(partial, index=False)
    created = api.post(
        "/v1/batch-predictions",
        json={"model": "churn-batch", "data_uri": str(partial), "output_uri": str(tmp_path / "o")},
    ).json()
    failed = wait_done(api, f"/v1/batch-predictions/{created['id']}")
    assert failed["status"] == "FAILED" and "tenure_months" in failed["message"]
    assert not (tmp_path / "o" / "batch-prediction" / "result").exists()


def test_a_killed_worker_leaves_no_partial_output_and_the_job_completes(
    api: httpx.Client, churn: dict, server: RunningServer, tmp_path: Path
) -> None:
    big = pd.concat([pd.read_csv(CHURN, dtype=str, keep_default_na=False)] * 60, ignore_index=True)
    big.drop(columns=["churned"]).to_csv(tmp_path / "big.csv", index=False)
    out = tmp_path / "out"
    created = api.post(
        "/v1/batch-predictions",
        json={"model": "churn-batch", "data_uri": str(tmp_path / "big.csv"), "output_uri": str(out)},
    ).json()
    store = SqlMetadataStore(server.database_url, run_migrations=False)
    queue = SqlJobQueue(store, 3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = queue.job_of(created["id"])
        if (
            job
            and job["state"] == "RUNNING"
            and api.get(f"/v1/batch-predictions/{created['id']}").json()["rows_scored"] > 0
        ):
            break
        time.sleep(0.05)
    os.kill(int(job["owner"].split(":")[1]), signal.SIGKILL)
    final = out / "batch-prediction" / "result" / f"{created['id']}-big.csv.gz"
    assert not final.exists()  # mid-job, nothing is under its final name
    done = wait_done(api, f"/v1/batch-predictions/{created['id']}", timeout=240)
    assert done["status"] == "COMPLETED", done["message"]
    assert queue.job_of(created["id"])["attempts"] == 2
    assert len(pd.read_csv(final)) == len(big) == done["rows_scored"]
    assert not list((out / "batch-prediction" / ".staging").rglob("*.gz"))
    store.dispose()


def test_metrics_count_requests_predictions_and_batch_rows(api: httpx.Client, churn: dict) -> None:
    api.post("/v1/models/churn-batch/predict", json={"records": [{}, {}]}).raise_for_status()
    api.post("/v1/models/nope/predict", json={"record": {}})
    text = api.get("/metrics").text
    model_id = churn["model"]["id"]
    assert f'mlsvc_predictions_total{{model="{model_id}",path="compiled",version="1"}}' in text
    assert 'mlsvc_predict_errors_total{code="not_found",model="unknown"}' in text
    assert 'mlsvc_http_requests_total{method="POST",route="/v1/models/{ref}/predict",status="200"}' in text
    assert "mlsvc_http_request_duration_seconds_bucket" in text
    rows = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("mlsvc_batch_rows_scored ")))
    listed = api.get("/v1/batch-predictions", params={"limit": 1000}).json()["items"]
    assert rows == sum(bp["rows_scored"] for bp in listed)
