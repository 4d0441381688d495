"""The application layer: mlsvc's operations, one module per resource, typed in and out, protocol-neutral; the
only door from a face (REST, another API, a console) to the core and the planes."""

from __future__ import annotations

from dataclasses import dataclass

from mlsvc.config import Settings
from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.planes import Planes, open_planes
from mlsvc.service.batch_predictions import BatchPredictions
from mlsvc.service.common import ListQuery
from mlsvc.service.datasources import DataSources
from mlsvc.service.evaluations import Evaluations
from mlsvc.service.models import Models
from mlsvc.service.predictions import PredictionOutcome, Predictions
from mlsvc.service.refs import ModelRefs

__all__ = ["ListQuery", "PredictionOutcome", "Service", "ServiceFigures"]


@dataclass(frozen=True)
class ServiceFigures:
    """Figures of the whole deployment (every process's work), read from the metadata store."""

    jobs_by_state: dict[str, int]
    batch_rows_scored: int


class Service:
    """The operations of every resource over one process's planes."""

    def __init__(self, settings: Settings, metadata: SqlMetadataStore | None = None) -> None:
        self.settings = settings
        self.planes: Planes = open_planes(settings, metadata)
        store, attempts = self.planes.metadata, settings.job_max_attempts
        refs = ModelRefs(store)
        self.predictions = Predictions(store, self.planes.registry, refs, settings.max_predict_records)
        self.datasources = DataSources(store, self.planes.uris, attempts)
        self.models = Models(store, self.planes.registry, refs, self.predictions.warm, attempts)
        self.evaluations = Evaluations(store, refs, attempts)
        self.batch_predictions = BatchPredictions(store, self.planes.uris, refs, attempts)

    def figures(self) -> ServiceFigures:
        store = self.planes.metadata
        return ServiceFigures(store.job_counts(), store.batch_rows_scored())

    def close(self) -> None:
        self.planes.close()
