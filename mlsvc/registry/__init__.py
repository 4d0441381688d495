"""The model registry plane: what the core needs of it (log a version, move aliases, load), behind one interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

MODEL_ID_TAG = "mlsvc.model_id"  # on the run of every version: which mlsvc model it was trained for


@dataclass(frozen=True)
class RegisteredVersion:
    """One logged and registered model version, with the SHA-256 of each of its files (and their signature)."""

    run_id: str
    version: int
    model_uri: str
    digests: dict[str, str] = field(default_factory=dict)
    signature: str | None = None

    def artifact_fields(self) -> dict[str, Any]:
        """The fields a model resource keeps so that every later load can verify the files first."""
        return {"artifact_digests": self.digests, "artifact_signature": self.signature}


@dataclass(frozen=True)
class ArtifactRef:
    """What loading a version needs: where its files are, what they were at registration, and a name for messages."""

    model_uri: str
    label: str
    digests: Mapping[str, str] | None
    signature: str | None

    @classmethod
    def of(cls, model: Mapping[str, Any]) -> ArtifactRef:
        """The reference of a model resource as the metadata store holds it."""
        return cls(
            model_uri=model["model_uri"],
            label=f"model {model['name']}:{model.get('version')} ({model['id']})",
            digests=model.get("artifact_digests"),
            signature=model.get("artifact_signature"),
        )


# Told of every refused load (the reference and what was wrong), so the deployment can count and show it.
IntegrityListener = Callable[[ArtifactRef, list[str]], None]


class ModelRegistry(Protocol):
    """Versions of named models, their aliases, and loading a version's fitted model."""

    def initialize(self) -> str:
        """Create the registry's backing store if it is not there yet; the experiment's id."""
        ...

    def warm(self) -> None:
        """Connect to the backing stores now rather than on the first load (a worker does it while idle)."""
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
        """Log a fitted model and register it as the next version of ``name``, with its files' digests."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def discard_versions(self, name: str, model_id: str) -> list[int]:
        """Delete every version of ``name`` logged for the mlsvc model ``model_id``, with its runs: what a training
        job that ended without its result (or an earlier attempt of one that is running again) registered. The
        versions deleted."""
        ...

    def verify(self, ref: ArtifactRef) -> None:
        """Check a version's stored files against the digests recorded for it, reading none of them as a model;
        raises MlsvcError(ARTIFACT_INTEGRITY) when they do not match."""
        ...

    def load(self, ref: ArtifactRef) -> Any:
        """The fitted model of a registered version, once its files match the digests recorded for it; raises
        MlsvcError(ARTIFACT_INTEGRITY) without deserializing anything when they do not."""
        ...
