"""The model registry plane: what the core needs of it (log a version, move aliases, load), behind one interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd


@dataclass(frozen=True)
class RegisteredVersion:
    """One logged and registered model version."""

    run_id: str
    version: int
    model_uri: str


class ModelRegistry(Protocol):
    """Versions of named models, their aliases, and loading a version's fitted model."""

    def initialize(self) -> str:
        """Create the registry's backing store if it is not there yet; the experiment's id."""
        ...

    def log_model(
        self,
        name: str,
        pipeline: Any,
        input_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        leaderboard: list[dict[str, Any]],
        tags: dict[str, str],
    ) -> RegisteredVersion:
        """Log a fitted model and register it as the next version of ``name``."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def load(self, model_uri: str) -> Any:
        """The fitted model of a registered version."""
        ...
