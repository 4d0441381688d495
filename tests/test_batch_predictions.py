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

from tests.datasets import IRIS_CLASSES, iris_frame
from tests.rest import completed, error
from tests.scoring import pipeline_output, registered_pipeline
from tests.servers import (
    REPO,
    RunningServer,
    assert_taken_over,
    claimed_and_scoring,
    job_queue,
    start_server,
    stop_server,
    wait_done,
)

CHURN = REPO / "datasources" / "churn.csv"


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
def bucket(s3_client: Any) -> str:
    name = f"batch-{int(time.time() * 1000)}"
    s3_client.create_bucket(Bucket=name)
    s3_client.upload_file(str(CHURN), name, "in/churn.csv")
    s3_client.upload_file(str(CHURN) + ".schema", name, "in/churn.csv.schema")
    return name


@pytest.fixture(scope="module")
def churn(api: httpx.Client, bucket: str) -> dict[str, Any]:
    ds = completed(api, "/v1/datasources", {"data_uri": f"s3://{bucket}/in/churn.csv"})
    model = completed(api, "/v1/models", {"name": "churn-batch", "datasource_id": ds["id"], "time_budget_s": 3})
    return {"ds": ds, "model": model}


def test_batch_over_a_datasource_writes_amazon_ml_layout_and_a_manifest(
    api: httpx.Client, churn: dict[str, Any], bucket: str, s3_client: Any
) -> None:
    body = {"model": "churn-batch", "datasource_id": churn["ds"]["id"], "output_uri": f"s3://{bucket}/out/"}
    bp = completed(api, "/v1/batch-predictions", body)
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


def test_batch_over_a_csv_with_a_row_id_and_invalid_rows(
    api: httpx.Client, churn: dict[str, Any], tmp_path: Path
) -> None:
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
    bp = completed(api, "/v1/batch-predictions", body)
    assert bp["rows_scored"] == 300 and bp["invalid_row_count"] == 1 and bp["rows_with_invalid_values"] == 1
    assert "line 11" in bp["invalid_examples"][0]
    [output] = bp["outputs"]
    frame = pd.read_csv(output["output"], dtype={"customer_id": str})
    assert list(frame["customer_id"]) == list(source["customer_id"]) and len(frame) == 300
    assert Path(bp["manifest_uri"]).exists()


def _batch_and_live(
    api: httpx.Client, folder: Path, frame: pd.DataFrame, name: str, target: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Train ``name`` on ``frame`` to predict ``target`` and score the same rows in a batch: the batch's output,
    and the real-time predictions of its first 20 rows."""
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    ds = completed(api, "/v1/datasources", {"data_uri": str(path), "target": target})
    completed(api, "/v1/models", {"name": name, "datasource_id": ds["id"], "time_budget_s": 2})
    body = {"model": name, "datasource_id": ds["id"], "output_uri": str(folder / name)}
    bp = completed(api, "/v1/batch-predictions", body)
    records = frame.drop(columns=[target]).head(20).to_dict("records")
    live = api.post(f"/v1/models/{name}/predict", json={"records": records}).json()["predictions"]
    return pd.read_csv(bp["outputs"][0]["output"]), live


def test_multiclass_and_regression_layouts(api: httpx.Client, tmp_path: Path) -> None:
    frame, classes = iris_frame(), IRIS_CLASSES
    out, live = _batch_and_live(api, tmp_path, frame, "iris-batch", "species")
    assert list(out.columns) == classes and len(out) == 150
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out.head(20), [[p["predicted_scores"][c] for c in classes] for p in live], atol=1e-9)

    out, live = _batch_and_live(api, tmp_path, frame.drop(columns=["species"]), "petal-batch", "petal_width")
    assert list(out.columns) == ["score"] and len(out) == 150
    np.testing.assert_allclose(out["score"].head(20), [p["predicted_value"] for p in live], atol=1e-9)


def test_bad_batch_requests(api: httpx.Client, churn: dict[str, Any], tmp_path: Path) -> None:
    def refused(body: dict[str, Any], status: int, code: str) -> None:
        error(api.post("/v1/batch-predictions", json=body), status, code)

    base = {"model": "churn-batch", "datasource_id": churn["ds"]["id"], "output_uri": str(tmp_path)}
    refused({**base, "model": "nope"}, 404, "not_found")
    refused({**base, "output_uri": "ftp://x/y/"}, 400, "unsupported_uri")
    refused({**base, "data_uri": str(CHURN)}, 422, "validation_error")
    refused({**base, "datasource_id": "nope"}, 404, "not_found")
    partial = tmp_path / "partial.csv"
    pd.read_csv(CHURN).drop(columns=["tenure_months", "contract"]).head(50).to_csv(partial, index=False)
    created = api.post(
        "/v1/batch-predictions",
        json={"model": "churn-batch", "data_uri": str(partial), "output_uri": str(tmp_path / "o")},
    ).json()
    failed = wait_done(api, f"/v1/batch-predictions/{created['id']}")
    assert failed["status"] == "FAILED" and "tenure_months" in failed["message"]
    # The caller gave no schema: the message speaks of the model's columns.
    assert failed["message"].startswith("the model reads columns that ") and "trained on" in failed["message"]
    assert not (tmp_path / "o" / "batch-prediction" / "result").exists()


def test_a_killed_worker_leaves_no_partial_output_and_the_job_completes(
    api: httpx.Client, churn: dict[str, Any], server: RunningServer, tmp_path: Path
) -> None:
    # Long enough (2,000,000 rows) that the worker is still scoring when it is killed.
    rows = _repeated_churn(tmp_path / "big.csv", 400)
    out = tmp_path / "out"
    created = api.post(
        "/v1/batch-predictions",
        json={"model": "churn-batch", "data_uri": str(tmp_path / "big.csv"), "output_uri": str(out)},
    ).json()
    with job_queue(server.database_url) as queue:
        job = claimed_and_scoring(api, queue, created["id"])
        pid = int(job["owner"].split(":")[1])
        assert os.getpgid(pid) == server.process.pid  # one of this server's worker processes
        os.kill(pid, signal.SIGKILL)
        final = out / "batch-prediction" / "result" / f"{created['id']}-big.csv.gz"
        assert not final.exists()  # mid-job, nothing is under its final name
        done = wait_done(api, f"/v1/batch-predictions/{created['id']}", timeout=240)
        assert done["status"] == "COMPLETED", done["message"]
        assert_taken_over(queue, created["id"], pid)
    with gzip.open(final, "rb") as scored:
        assert sum(1 for _ in scored) - 1 == rows == done["rows_scored"]
    assert not list((out / "batch-prediction" / ".staging").rglob("*.gz"))


def _repeated_churn(path: Path, times: int) -> int:
    """The churn example's rows ``times`` over, without the target, as a CSV at ``path``; how many rows."""
    frame = pd.read_csv(CHURN, dtype=str, keep_default_na=False).drop(columns=["churned"])
    header, body = frame.to_csv(index=False).encode().split(b"\n", 1)
    with path.open("wb") as out:
        out.write(header + b"\n")
        for _ in range(times):
            out.write(body)
    return len(frame) * times


def test_metrics_count_requests_predictions_and_batch_rows(api: httpx.Client, churn: dict[str, Any]) -> None:
    api.post("/v1/models/churn-batch/predict", json={"records": [{}, {}]}).raise_for_status()
    api.post("/v1/models/nope/predict", json={"record": {}})
    text = api.get("/metrics").text
    assert 'mlsvc_predictions_total{model="churn-batch",path="compiled",version="1"}' in text
    assert 'mlsvc_predict_errors_total{code="not_found",model="unknown",version=""}' in text
    assert 'mlsvc_http_requests_total{method="POST",route="/v1/models/{ref}/predict",status="200"}' in text
    assert "mlsvc_http_request_duration_seconds_bucket" in text
    rows = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("mlsvc_batch_rows_scored ")))
    listed = api.get("/v1/batch-predictions", params={"limit": 1000}).json()["items"]
    assert rows == sum(bp["rows_scored"] for bp in listed)


def _scores(frame: pd.DataFrame, model: dict[str, Any]) -> np.ndarray:
    """The scores of a batch output in the order ``pipeline_output`` gives them."""
    if model["model_type"] == "BINARY":
        return frame["score"].to_numpy()
    if model["model_type"] == "MULTICLASS":
        return frame[model["classes"]].to_numpy()
    return frame["score"].to_numpy()


def test_batch_output_is_the_registered_pipelines_row_for_row_across_chunks_files_and_a_split(
    api: httpx.Client, churn: dict[str, Any], server: RunningServer, tmp_path: Path
) -> None:
    boosted = {
        "name": "churn-batch-hgb",
        "datasource_id": churn["ds"]["id"],
        "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": 60, "early_stopping": False}}],
    }
    models = [churn["model"], completed(api, "/v1/models", boosted)]
    source = pd.read_csv(CHURN, dtype=str, keep_default_na=False).drop(columns=["churned"])
    folder = tmp_path / "in"
    folder.mkdir()
    _repeated_churn(folder / "a-many-chunks.csv", 12)  # 60,000 rows, 5.4 MB: more than one 4 MB chunk
    source.head(7).to_csv(folder / "b-small.csv", index=False)
    with gzip.open(folder / "c-packed.csv.gz", "wt") as packed:
        source.iloc[100:2100].to_csv(packed, index=False)
    inputs = {
        "a-many-chunks.csv": pd.concat([source] * 12, ignore_index=True),
        "b-small.csv": source.head(7),
        "c-packed.csv.gz": source.iloc[100:2100].reset_index(drop=True),
    }
    for model in models:
        pipeline = registered_pipeline(server, model)
        body = {"model": model["id"], "data_uri": str(folder), "row_id": "customer_id", "output_uri": str(tmp_path)}
        bp = completed(api, "/v1/batch-predictions", body)
        assert [Path(o["input"]).name for o in bp["outputs"]] == list(inputs)
        for output in bp["outputs"]:
            expected_rows = inputs[Path(output["input"]).name]
            scored = pd.read_csv(output["output"], dtype={"customer_id": str, "bestAnswer": str})
            assert list(scored["customer_id"]) == list(expected_rows["customer_id"])
            expected = pipeline_output(pipeline, model, expected_rows.to_dict("records"))[:, 1]
            np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-9)
            labels = np.where(expected >= model["score_threshold"], "yes", "no")
            assert (scored["bestAnswer"].to_numpy() == labels).all()

    # A datasource that takes a random 70 % of the rows: its batch scores exactly those, each as the pipeline does.
    split = {"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "randomSeed": "s"}}
    ds = completed(api, "/v1/datasources", {"data_uri": str(CHURN), "rearrangement": split})
    model = models[1]
    bp = completed(
        api,
        "/v1/batch-predictions",
        {"model": model["id"], "datasource_id": ds["id"], "output_uri": str(tmp_path / "split")},
    )
    scored = pd.read_csv(bp["outputs"][0]["output"], dtype={"customer_id": str})
    assert len(scored) == bp["rows_scored"] and 3300 < len(scored) < 3700
    chosen = source.set_index("customer_id").loc[scored["customer_id"]].reset_index()
    expected = pipeline_output(registered_pipeline(server, model), model, chosen.to_dict("records"))[:, 1]
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-9)


def test_a_long_batch_reports_its_progress_as_it_scores(
    api: httpx.Client, churn: dict[str, Any], tmp_path: Path
) -> None:
    # k-NN scores slowly (every row against every training row): 500,000 rows keep the job going for a while.
    knn = {"name": "churn-batch-knn", "datasource_id": churn["ds"]["id"], "candidates": [{"family": "knn"}]}
    model = completed(api, "/v1/models", knn)
    rows = _repeated_churn(tmp_path / "long.csv", 100)
    body = {"model": model["id"], "data_uri": str(tmp_path / "long.csv"), "output_uri": str(tmp_path / "out")}
    path = f"/v1/batch-predictions/{api.post('/v1/batch-predictions', json=body).json()['id']}"
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + 240
    while (bp := api.get(path).json())["status"] in ("PENDING", "INPROGRESS") and time.monotonic() < deadline:
        if bp["status"] == "INPROGRESS" and (not seen or seen[-1] != (bp["progress"], bp["rows_scored"])):
            seen.append((bp["progress"], bp["rows_scored"]))
        time.sleep(0.05)
    assert bp["status"] == "COMPLETED" and bp["rows_scored"] == rows, bp
    moving = [(p, n) for p, n in seen if 0 < n < rows]
    assert len(moving) >= 3, seen  # reported while it ran, not only at its end
    assert moving == sorted(moving) and all(0 < p < 1 for p, _ in moving)
    assert bp["started_at"] is not None and bp["created_at"] <= bp["started_at"] <= bp["finished_at"]


def test_an_output_it_cannot_write_fails_before_any_row_is_scored(api: httpx.Client, churn: dict[str, Any]) -> None:
    body = {"model": "churn-batch", "datasource_id": churn["ds"]["id"], "output_uri": "s3://no-such-bucket-mlsvc/out/"}
    created = api.post("/v1/batch-predictions", json=body)
    assert created.status_code == 202, created.text
    failed = wait_done(api, f"/v1/batch-predictions/{created.json()['id']}")
    assert failed["status"] == "FAILED" and failed["rows_scored"] == 0, failed
    assert (
        "s3://no-such-bucket-mlsvc/out/batch-prediction/ cannot be written, so nothing was scored" in failed["message"]
    )
    assert "no-such-bucket-mlsvc" in failed["message"] and failed["finished_at"] is not None
