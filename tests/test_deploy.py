"""deploy/compose.yaml: the roles the README's "Running at scale" describes, configured only with settings mlsvc
reads (the file cannot be run here: its images come from a registry the tests do not reach)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_the_topology_is_replicas_workers_postgres_and_s3() -> None:
    services = _services()
    assert {"postgres", "minio", "buckets", "api", "worker", "proxy", "dask-scheduler", "dask-worker"} <= set(services)
    assert services["api"]["command"] == ["serve"] and services["api"]["environment"]["MLSVC_WORKERS"] == "0"
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["deploy"]["replicas"] == 2 and services["worker"]["deploy"]["replicas"] == 2
    for role in ("api", "worker"):
        env = services[role]["environment"]
        assert env["MLSVC_DATABASE_URL"].startswith("postgresql://")
        assert env["MLSVC_MLFLOW_TRACKING_URI"].startswith("postgresql://")
        assert env["MLSVC_MLFLOW_ARTIFACT_ROOT"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert services["worker"]["environment"]["MLSVC_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    assert services["dask-worker"]["entrypoint"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    # a Dask worker opens the same stores as a job worker and verifies models with the same key
    shared = ("MLSVC_DATABASE_URL", "MLSVC_MLFLOW_TRACKING_URI", "MLSVC_MLFLOW_ARTIFACT_ROOT", "MLSVC_SECRET_KEY")
    for key in (*shared, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        assert services["dask-worker"]["environment"][key] == services["worker"]["environment"][key], key
    for mounted in ("nginx.conf", "postgres-init.sql"):
        assert (COMPOSE.parent / mounted).is_file()


def test_every_setting_in_it_is_one_mlsvc_reads() -> None:
    config = (REPO / "mlsvc" / "config.py").read_text()
    read = set(re.findall(r'"(MLSVC_[A-Z_]+)"', config))
    used = {k for service in _services().values() for k in (service.get("environment") or {}) if k.startswith("MLSVC")}
    assert used and used <= read, used - read
