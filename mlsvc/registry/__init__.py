"""The model registry plane: what the core needs of it (log a version, move aliases, load), behind one interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

MODEL_ID_TAG = "mlsvc.model_id"  # on the run of every version: which mlsvc model it was trained for
# On every registered version: mlsvc's number for it. The registry's numbers are made to match mlsvc's; where they
# cannot (a job retried after it had registered), this says which registry version is which mlsvc version.
VERSION_TAG = "mlsvc.version"


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
class VersionRecord:
    """What a training job logs beside a fitted model. ``card``: what scoring needs besides the fitted model (the
    model resource's fields the scorer reads: id, model_type, features, classes, score_threshold…; for a
    recommender, k and roles), saved with the model for MLflow's pyfunc. ``example``: a few rows as a user sends
    them. ``evaluation``: the holdout evaluation's insights, drawn as figures; ``documents``: NAME → a JSON-ready
    value, each logged as NAME.json (the schema, the recipe, the importances…); ``version_tags``: the registered
    version's tags, ``tags``: the run's."""

    card: Mapping[str, Any]
    example: pd.DataFrame
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    leaderboard: list[dict[str, Any]]
    tags: Mapping[str, str]
    version_tags: Mapping[str, str] = field(default_factory=dict)
    evaluation: Mapping[str, Any] | None = None
    documents: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None  # mlsvc's number for the version (given when the model was created)


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

    def log_model(self, name: str, fitted: Any, record: VersionRecord) -> RegisteredVersion:
        """Log a fitted model, with what its run shows, and register it as the next version of ``name``, with its
        files' digests."""
        ...

    def annotate(self, name: str, version: int, tags: Mapping[str, str], description: str) -> None:
        """Tag a registered version and describe it (what mlsvc says of it once its job completed)."""
        ...

    def tag_version(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on a registered version (e.g. its status once mlsvc deleted it)."""
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
