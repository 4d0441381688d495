"""The planes one process opens: the metadata store and job queue, the object store and the model registry."""

from __future__ import annotations

from dataclasses import dataclass

from mlsvc.config import Settings
from mlsvc.metadata import JobQueue
from mlsvc.metadata.queue import SqlJobQueue
from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.objects import ObjectStore, RoutingObjectStore
from mlsvc.registry import ModelRegistry
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.security.uris import UriValidator


@dataclass
class Planes:
    """The metadata store and job queue, the URI validator and the object store, and the model registry of one
    process."""

    settings: Settings
    metadata: SqlMetadataStore
    queue: JobQueue
    uris: UriValidator
    objects: ObjectStore
    registry: ModelRegistry

    def close(self) -> None:
        self.metadata.dispose()


def open_planes(settings: Settings, metadata: SqlMetadataStore | None = None) -> Planes:
    """The planes ``settings`` name; ``metadata`` to share a store this process has open already."""
    settings.home.mkdir(parents=True, exist_ok=True)  # the embedded defaults (SQLite, MLflow) live there
    store = metadata or SqlMetadataStore(settings.database_url)
    uris = UriValidator(settings.local_roots, settings.own_files())
    return Planes(
        settings=settings,
        metadata=store,
        queue=SqlJobQueue(store, settings.job_lease_s),
        uris=uris,
        objects=RoutingObjectStore(validator=uris),
        registry=MlflowRegistry(
            settings, on_refused=lambda ref, found: store.record_integrity_failure(ref.model_uri, ref.label, found)
        ),
    )
