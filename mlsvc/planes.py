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


@dataclass
class Planes:
    """The metadata store and job queue, the object store and the model registry of one process."""

    settings: Settings
    metadata: SqlMetadataStore
    queue: JobQueue
    objects: ObjectStore
    registry: ModelRegistry

    def close(self) -> None:
        self.metadata.dispose()


def open_planes(settings: Settings, metadata: SqlMetadataStore | None = None) -> Planes:
    """The planes ``settings`` name; ``metadata`` to share a store this process has open already."""
    store = metadata or SqlMetadataStore(settings.database_url)
    return Planes(
        settings=settings,
        metadata=store,
        queue=SqlJobQueue(store, settings.job_lease_s),
        objects=RoutingObjectStore(settings.local_roots),
        registry=MlflowRegistry(settings),
    )
