"""Batch predictions and datasource passes on a real Dask cluster (a `dask scheduler` and `dask worker` processes on
loopback): a large file cut into parts on record boundaries (quoted line breaks inside), scored on the Dask workers
and joined in order, to the same rows, scores and line numbers as one pass; a Dask worker killed mid-batch only
re-runs its parts; a datasource's statistics computed per part and merged, to the local pass's."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.rest import completed
from tests.scoring import pipeline_output, registered_pipeline
from tests.servers import REPO, RunningServer, _stop, free_port, start_server, stop_server, wait_done

CHURN = REPO / "datasources" / "churn.csv"


def _dask(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", *args], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


class Cluster:
    """A scheduler and its workers, started with the environment an mlsvc worker has (the same MLSVC_HOME)."""

    def __init__(self, home: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.env = {**os.environ, "MLSVC_HOME": str(home), "MLSVC_LOCAL_ROOTS": "/"}
        self.log = home / "dask.log"
        port = self.address.rsplit(":", 1)[1]
        scheduler = ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
        self.scheduler = _dask(scheduler, self.env, self.log)
        self.workers = [self.start_worker(f"w{i}") for i in range(2)]
        self.wait_for_workers(2)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        args = ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        return _dask([*args, "--name", name], self.env, self.log)

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(n, timeout=60)
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the Dask cluster did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            _stop(process)


@pytest.fixture(scope="module")
def cluster_server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Cluster]]:
    home = tmp_path_factory.mktemp("dask-home")
    cluster = Cluster(home)
    extra = {"MLSVC_DASK_SCHEDULER": cluster.address, "MLSVC_PARTITION_BYTES": str(256 * 1024)}
    try:
        server = start_server(home, extra, workers=1)
    except BaseException:
        cluster.stop()
        raise
    yield server, cluster
    stop_server(server)
    cluster.stop()


@pytest.fixture(scope="module")
def dask_api(cluster_server: tuple[RunningServer, Cluster]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster_server[0].url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def model(dask_api: httpx.Client) -> dict[str, Any]:
    ds = completed(dask_api, "/v1/datasources", {"data_uri": str(CHURN)})
    body = {"name": "churn-dask", "datasource_id": ds["id"], "candidates": [{"family": "linear"}]}
    return completed(dask_api, "/v1/models", body)


def _awkward_input(path: Path, times: int) -> pd.DataFrame:
    """Churn's rows ``times`` over (target dropped), with quoted line breaks, quotes and commas in some values,
    written as a CSV; the frame of what was written."""
    source = pd.read_csv(CHURN, dtype=str, keep_default_na=False).drop(columns=["churned"])
    frame = pd.concat([source] * times, ignore_index=True)
    frame["customer_id"] = [f"C{i:07d}" for i in range(len(frame))]
    odd = np.arange(0, len(frame), 997)
    frame.loc[odd, "payment_method"] = 'mailed\ncheck, "paper"'  # an unseen level, across two lines
    frame.to_csv(path, index=False)
    return frame


def test_a_large_file_is_scored_in_parts_on_the_cluster_as_in_one_pass(
    dask_api: httpx.Client, cluster_server: tuple[RunningServer, Cluster], model: dict[str, Any], tmp_path: Path
) -> None:
    server = cluster_server[0]
    data = tmp_path / "big.csv"
    frame = _awkward_input(data, 6)  # 30,000 rows, 2.8 MB: about ten parts of 256 KiB
    with data.open("a") as out:
        out.write("C9999998,12,month-to-month\n")  # ragged: three fields where the header has seventeen
    body = {"model": model["id"], "data_uri": str(data), "row_id": "customer_id", "output_uri": str(tmp_path / "o")}
    bp = completed(dask_api, "/v1/batch-predictions", body)
    assert bp["rows_scored"] == len(frame) and bp["invalid_row_count"] == 1
    last_line = 1 + len(frame) + int((frame["payment_method"].str.count("\n")).sum()) + 1
    assert bp["invalid_examples"] == [f"{data} line {last_line}: 3 fields where the header has 17"]
    with gzip.open(bp["outputs"][0]["output"], "rt") as scored_file:
        scored = pd.read_csv(scored_file, dtype={"customer_id": str, "bestAnswer": str})
    assert list(scored["customer_id"]) == list(frame["customer_id"])
    expected = pipeline_output(registered_pipeline(server, model), model, frame.to_dict("records"))[:, 1]
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-9)
    parts = [line for line in server.log_text().splitlines() if bp["id"] in line and "parts on the Dask" in line]
    assert parts and int(parts[0].split(" in ")[1].split()[0]) >= 8, parts


def test_a_dask_worker_killed_mid_batch_only_loses_its_parts(
    dask_api: httpx.Client, cluster_server: tuple[RunningServer, Cluster], model: dict[str, Any], tmp_path: Path
) -> None:
    cluster = cluster_server[1]
    data = tmp_path / "bigger.csv"
    frame = _awkward_input(data, 40)  # 200,000 rows: about 70 parts
    body = {"model": model["id"], "data_uri": str(data), "output_uri": str(tmp_path / "o")}
    created = dask_api.post("/v1/batch-predictions", json=body).json()
    deadline = time.monotonic() + 60
    while (seen := dask_api.get(f"/v1/batch-predictions/{created['id']}").json())["rows_scored"] == 0:
        assert time.monotonic() < deadline, "no part was scored"
        time.sleep(0.05)
    victim = cluster.workers.pop(0)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(5)
    assert seen["status"] == "INPROGRESS" and seen["rows_scored"] < len(frame)  # killed mid-batch
    cluster.workers.append(cluster.start_worker("w-replacement"))
    done = wait_done(dask_api, f"/v1/batch-predictions/{created['id']}")
    assert done["status"] == "COMPLETED", done["message"]
    assert done["rows_scored"] == len(frame)
    assert "Remove worker" in cluster.log.read_text(errors="replace")  # the scheduler saw it go
    with gzip.open(done["outputs"][0]["output"], "rt") as scored_file:
        assert sum(1 for _ in scored_file) - 1 == len(frame)


def test_parts_are_read_from_s3_and_written_back_by_the_dask_workers(
    dask_api: httpx.Client, model: dict[str, Any], tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    data = tmp_path / "s3.csv"
    frame = _awkward_input(data, 3)  # 15,000 rows: several parts, each read by its byte range
    s3_client.upload_file(str(data), s3_bucket, "in/s3.csv")
    packed = gzip.compress(frame.head(500).to_csv(index=False).encode())  # a gzipped file: one part, read whole
    s3_client.put_object(Bucket=s3_bucket, Key="in/t.csv.gz", Body=packed)
    body = {"model": model["id"], "data_uri": f"s3://{s3_bucket}/in/", "output_uri": f"s3://{s3_bucket}/out/"}
    bp = completed(dask_api, "/v1/batch-predictions", body)
    result = f"s3://{s3_bucket}/out/batch-prediction/result/{bp['id']}"
    assert [o["output"] for o in bp["outputs"]] == [f"{result}-s3.csv.gz", f"{result}-t.csv.gz"]  # as the local path
    rows = []
    for output in bp["outputs"]:
        body_bytes = s3_client.get_object(Bucket=s3_bucket, Key=output["output"].removeprefix(f"s3://{s3_bucket}/"))
        rows.append(len(pd.read_csv(io.BytesIO(gzip.decompress(body_bytes["Body"].read())))))
    assert rows == [len(frame), 500] and bp["rows_scored"] == len(frame) + 500
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="out/")["Contents"]
    assert not [o["Key"] for o in listed if "/.staging/" in o["Key"]]  # the parts went with the staging area


# --- datasource passes ---


def _close(found: Any, expected: Any, where: str = "statistics") -> None:
    """``found`` equals ``expected``, floats to 1e-9 of each other (the merge adds partitions' moments in another
    order than one pass adds chunks')."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and found.keys() == expected.keys(), where
        for key in expected:
            _close(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), where
        for i, (f, e) in enumerate(zip(found, expected, strict=True)):
            _close(f, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(found, bool):
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert found == expected, where


def test_a_datasources_pass_runs_in_parts_on_the_cluster_to_the_local_statistics(
    dask_api: httpx.Client, api: httpx.Client, cluster_server: tuple[RunningServer, Cluster], tmp_path: Path
) -> None:
    source = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    frame = pd.concat([source] * 3, ignore_index=True)  # 15,000 rows, 1.4 MB: several parts of 256 KiB
    frame["customer_id"] = [f"C{i:07d}" for i in range(len(frame))]
    frame.loc[np.arange(0, len(frame), 499), "payment_method"] = 'mailed\ncheck, "paper"'  # across two lines
    frame.loc[np.arange(7, len(frame), 1009), "tenure_months"] = "twelve"  # invalid NUMERIC values
    data = tmp_path / "stats.csv"
    frame.to_csv(data, index=False)
    with data.open("a") as out:
        out.write("C9999998,12,month-to-month\n")  # ragged
    body = {"data_uri": str(data), "target": "churned", "row_id": "customer_id"}
    on_cluster = completed(dask_api, "/v1/datasources", body)
    here = completed(api, "/v1/datasources", body)
    for field in ("row_count", "used_row_count", "invalid_row_count", "schema"):
        assert on_cluster[field] == here[field], field
    _close(on_cluster["statistics"], here["statistics"])
    log = cluster_server[0].log_text().splitlines()
    parts = [line for line in log if str(data) in line and "parts on the Dask cluster" in line]
    assert parts and int(parts[0].split(" in ")[1].split()[0]) >= 4, parts


# --- training ---


def _trials(model: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What the search found, without its timings: each candidate's rung, rows, folds and validation score."""
    return [
        (row["candidate"], row.get("rung"), row.get("rows"), row.get("folds"), row["validation_score"], row["status"])
        for row in model["leaderboard"]
    ]


def test_a_search_fans_its_rungs_out_to_the_cluster_to_the_local_leaderboard(
    dask_api: httpx.Client, api: httpx.Client, cluster_server: tuple[RunningServer, Cluster]
) -> None:
    # A budget no candidate comes near, so that no decision rests on how fast either machine fits: the budget's
    # cuts are the same code on both paths, but they read the clock.
    candidates = [
        {"family": "linear"},
        {"family": "linear", "params": {"C": 0.05}},
        {"family": "random_forest", "params": {"n_estimators": 40}},
        {"family": "hist_gradient_boosting", "params": {"max_iter": 40, "early_stopping": False}},
    ]
    models = []
    for client in (dask_api, api):
        ds = completed(client, "/v1/datasources", {"data_uri": str(CHURN), "target": "churned"})
        body = {"name": f"churn-search-{len(models)}", "datasource_id": ds["id"], "candidates": candidates}
        models.append(completed(client, "/v1/models", body | {"seed": 7, "time_budget_s": 600}))
    on_cluster, here = models
    assert _trials(on_cluster) == _trials(here)
    assert len({row["candidate"] for row in on_cluster["leaderboard"]}) >= 4
    # Which option is selected also weighs how fast each predicts, as measured on each machine (a model 4x slower
    # must validate 0.3 % better), so the two may pick differently among the same options; each picked one of them.
    for m in models:
        picked = [row for row in m["leaderboard"] if row["selected"]]
        assert len(picked) == 1 and picked[0]["validation_score"] == m["metrics"]["validation_score"]
    log = cluster_server[0].log_text()
    assert "candidates validated on the Dask cluster" in log
