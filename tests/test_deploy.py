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
    assert {"postgres", "minio", "buckets", "api", "worker", "proxy"} <= set(services)
    assert services["api"]["command"] == ["serve"] and services["api"]["environment"]["MLSVC_WORKERS"] == "0"
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["deploy"]["replicas"] == 2 and services["worker"]["deploy"]["replicas"] == 2
    for role in ("api", "worker"):
        env = services[role]["environment"]
        assert env["MLSVC_DATABASE_URL"].startswith("postgresql://")
        assert env["MLSVC_MLFLOW_TRACKING_URI"].startswith("postgresql://")
        assert env["MLSVC_MLFLOW_ARTIFACT_ROOT"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    for mounted in ("nginx.conf", "postgres-init.sql"):
        assert (COMPOSE.parent / mounted).is_file()


def test_every_setting_in_it_is_one_mlsvc_reads() -> None:
    config = (REPO / "mlsvc" / "config.py").read_text()
    read = set(re.findall(r'"(MLSVC_[A-Z_]+)"', config))
    used = {k for service in _services().values() for k in (service.get("environment") or {}) if k.startswith("MLSVC")}
    assert used and used <= read, used - read
