"""Settings from the environment: embedded defaults, and local data roots that are closed by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlsvc.config import Settings


def test_embedded_defaults_live_under_the_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MLSVC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.home == tmp_path / ".mlsvc"
    assert settings.database_url == f"sqlite:///{tmp_path / '.mlsvc' / 'mlsvc.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / '.mlsvc' / 'mlflow.db'}"
    # A caller may reach the folder mlsvc started in, not /etc, and never mlsvc's own files.
    assert settings.local_roots == (tmp_path,)
    home = tmp_path / ".mlsvc"
    assert settings.own_files() == (
        str(home),
        str(home / "mlartifacts"),
        str(home / "mlsvc.db"),
        str(home / "mlflow.db"),
    )
    assert "mlsvc home" in settings.describe("a test")


def test_roots_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLSVC_LOCAL_ROOTS", f"{tmp_path}{os.pathsep}/srv/data")
    monkeypatch.setenv("MLSVC_DATABASE_URL", "postgresql://mlsvc:s3cret@db:5432/mlsvc")
    settings = Settings.from_env()
    assert settings.local_roots == (tmp_path, Path("/srv/data"))
    described = settings.describe("a test")
    assert "s3cret" not in described and "mlsvc:***@db" in described


def test_own_files_at_scale_are_the_artifact_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLSVC_HOME", str(tmp_path))
    monkeypatch.setenv("MLSVC_DATABASE_URL", "postgresql://mlsvc@db/mlsvc")
    monkeypatch.setenv("MLSVC_MLFLOW_TRACKING_URI", "postgresql://mlsvc@db/mlflow")
    monkeypatch.setenv("MLSVC_MLFLOW_ARTIFACT_ROOT", "s3://models/mlflow")
    assert Settings.from_env().own_files() == (str(tmp_path), "s3://models/mlflow/")
