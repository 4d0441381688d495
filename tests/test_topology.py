"""mlsvc as many processes on one store: two API replicas without job workers (`mlsvc serve`, MLSVC_WORKERS=0) and
two `mlsvc worker` processes, each with a home of its own, sharing only PostgreSQL (the metadata store, and MLflow's
tracking and registry) and loopback S3 (the data, the outputs and MLflow's artifacts)."""

from __future__ import annotations

import gzip
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlsvc.service.refs import ALIAS_FOLLOW_S
from tests.servers import (
    CHURN,
    RunningServer,
    _spawn,
    _stop,
    assert_taken_over,
    claimed_and_scoring,
    job_queue,
    start_server,
    stop_server,
    wait_done,
)
from tests.stores import fresh_postgres

pytestmark = pytest.mark.postgres
ROLE = "role             "


@dataclass
class Worker:
    process: Any  # `mlsvc worker`, the leader of its process group
    home: Path

    def log_text(self) -> str:
        log = self.home / "worker.log"
        return log.read_text(errors="replace") if log.exists() else ""


@dataclass
class Topology:
    replicas: list[RunningServer]
    workers: list[Worker]
    database_url: str
    bucket: str
    apis: list[httpx.Client]  # one client per replica


@pytest.fixture(scope="module")
def topology(
    s3_server: str, s3_client: Any, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    bucket = "mlsvc-topology"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.upload_file(str(CHURN), bucket, "data/churn.csv")
    s3_client.upload_file(str(CHURN) + ".schema", bucket, "data/churn.csv.schema")
    with fresh_postgres(postgres_admin_url) as metadata, fresh_postgres(postgres_admin_url) as mlflow:
        env = {
            "MLSVC_DATABASE_URL": metadata,
            "MLSVC_MLFLOW_TRACKING_URI": mlflow,
            "MLSVC_MLFLOW_ARTIFACT_ROOT": f"s3://{bucket}/mlflow",
            "MLSVC_JOB_LEASE_S": "3",
            "MLSVC_JOB_POLL_S": "0.2",
            "MLSVC_LOCAL_ROOTS": "/",
        }
        replicas: list[RunningServer] = []
        workers: list[Worker] = []
        try:
            for i in range(2):
                replicas.append(start_server(tmp_path_factory.mktemp(f"replica-{i}"), env, workers=0))
            for i in range(2):
                home = tmp_path_factory.mktemp(f"worker-{i}")
                worker_env = {**os.environ, **env, "MLSVC_HOME": str(home), "MLSVC_WORKERS": "1"}
                workers.append(Worker(_spawn("worker", worker_env, home / "worker.log"), home))
            apis = [httpx.Client(base_url=r.url, timeout=30) for r in replicas]
            yield Topology(replicas, workers, metadata, bucket, apis)
            for api in apis:
                api.close()
        finally:
            for worker in workers:
                _stop(worker.process)
            for replica in replicas:
                stop_server(replica)


def test_each_process_states_its_role_and_what_it_connects_to(topology: Topology) -> None:
    for replica in topology.replicas:
        log = replica.log_text()
        assert ROLE + "API replica: no job workers here" in log, log
        assert "metadata store   postgresql" in log and f"s3://{topology.bucket}/mlflow" in log, log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(ROLE + "job worker" in w.log_text() for w in topology.workers):
        time.sleep(0.2)
    for worker in topology.workers:
        assert ROLE + "job worker" in worker.log_text(), worker.log_text()
        assert "metadata store   postgresql" in worker.log_text()


def test_trained_through_one_replica_served_by_every_replica_and_aliases_followed(topology: Topology) -> None:
    a, b = topology.apis
    ds = a.post("/v1/datasources", json={"data_uri": f"s3://{topology.bucket}/data/churn.csv"}).json()
    assert wait_done(b, f"/v1/datasources/{ds['id']}")["status"] == "COMPLETED"
    linear = [{"family": "linear", "params": {}}]
    first = a.post("/v1/models", json={"name": "topo", "datasource_id": ds["id"], "candidates": linear}).json()
    v1 = wait_done(b, f"/v1/models/{first['id']}")
    assert v1["status"] == "COMPLETED", v1["message"]
    record = pd.read_csv(CHURN, dtype=str, keep_default_na=False).drop(columns=["churned"]).iloc[0].to_dict()
    answers = [api.post("/v1/models/topo:1/predict", json={"record": record}).json() for api in (a, b)]
    assert [x["model_id"] for x in answers] == [v1["id"], v1["id"]]
    assert answers[0]["predictions"] == answers[1]["predictions"]

    trees = [{"family": "hist_gradient_boosting", "params": {"max_iter": 20}}]
    second = b.post("/v1/models", json={"name": "topo", "datasource_id": ds["id"], "candidates": trees}).json()
    assert wait_done(a, f"/v1/models/{second['id']}")["status"] == "COMPLETED"
    a.put("/v1/models/topo/aliases/live", json={"version": 1}).raise_for_status()
    time.sleep(ALIAS_FOLLOW_S)
    for api in (a, b):  # both replicas serve v1 as live, and keep it loaded
        assert api.post("/v1/models/topo:live/predict", json={"record": record}).json()["version"] == 1
    moved = time.monotonic()
    b.put("/v1/models/topo/aliases/live", json={"version": 2}).raise_for_status()
    followed = None
    while time.monotonic() - moved < ALIAS_FOLLOW_S + 5:
        if a.post("/v1/models/topo:live/predict", json={"record": record}).json()["version"] == 2:
            followed = time.monotonic() - moved
            break
        time.sleep(0.02)
    print(f"replica A followed the alias moved through replica B after {followed} s")
    time.sleep(max(0.0, ALIAS_FOLLOW_S - (time.monotonic() - moved)))
    for api in (a, b):  # past the bound, no replica answers with the old version
        for _ in range(5):
            assert api.post("/v1/models/topo:live/predict", json={"record": record}).json()["version"] == 2


def test_a_worker_killed_mid_job_loses_nothing(topology: Topology, s3_client: Any, tmp_path: Path) -> None:
    a, b = topology.apis
    frame = pd.read_csv(CHURN, dtype=str, keep_default_na=False).drop(columns=["churned"])
    big = tmp_path / "big.csv"
    header, body = frame.to_csv(index=False).encode().split(b"\n", 1)
    big.write_bytes(header + b"\n" + body * 40)  # 200,000 rows of k-NN: seconds, still scoring when killed
    s3_client.upload_file(str(big), topology.bucket, "data/big.csv")
    ds = a.post("/v1/datasources", json={"data_uri": f"s3://{topology.bucket}/data/churn.csv"}).json()
    assert wait_done(a, f"/v1/datasources/{ds['id']}")["status"] == "COMPLETED"
    knn = {"name": "topo-knn", "datasource_id": ds["id"], "candidates": [{"family": "knn", "params": {}}]}
    model = wait_done(a, "/v1/models/" + a.post("/v1/models", json=knn).json()["id"])  # slow to score, on purpose
    assert model["status"] == "COMPLETED", model["message"]
    out = f"s3://{topology.bucket}/out/"
    created = b.post(
        "/v1/batch-predictions",
        json={"model": "topo-knn", "data_uri": f"s3://{topology.bucket}/data/big.csv", "output_uri": out},
    ).json()
    with job_queue(topology.database_url) as queue:
        job = claimed_and_scoring(b, queue, created["id"])
        pid = int(job["owner"].split(":")[1])
        holder = next(w for w in topology.workers if os.getpgid(pid) == w.process.pid)
        os.killpg(holder.process.pid, signal.SIGKILL)  # the whole host's worker, supervisor and all
        holder.process.wait(10)
        done = wait_done(a, f"/v1/batch-predictions/{created['id']}", timeout=400)
        assert done["status"] == "COMPLETED", done["message"]
        assert_taken_over(queue, created["id"], pid)
    assert done["rows_scored"] == len(frame) * 40
    (result,) = done["outputs"]
    bucket, key = result["output"].removeprefix("s3://").split("/", 1)
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert gzip.decompress(body).count(b"\n") - 1 == len(frame) * 40
    staged = s3_client.list_objects_v2(Bucket=topology.bucket, Prefix="out/batch-prediction/.staging/")
    assert not [o["Key"] for o in staged.get("Contents", []) if o["Key"].endswith(".gz")]
