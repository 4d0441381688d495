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
    # A caller may reach the folder mlsvc started in and its home, not /etc.
    assert settings.local_roots == (tmp_path, tmp_path / ".mlsvc")
    assert "mlsvc home" in settings.describe()


def test_roots_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLSVC_LOCAL_ROOTS", f"{tmp_path}{os.pathsep}/srv/data")
    monkeypatch.setenv("MLSVC_DATABASE_URL", "postgresql://mlsvc:s3cret@db:5432/mlsvc")
    settings = Settings.from_env()
    assert settings.local_roots == (tmp_path, Path("/srv/data"))
    assert "s3cret" not in settings.describe() and "mlsvc:***@db" in settings.describe()
