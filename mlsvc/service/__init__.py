"""The application layer: mlsvc's operations, one module per resource, typed in and out, protocol-neutral; the
only door from a face (REST, another API, a console) to the core and the planes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from mlsvc.config import Settings
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from mlsvc.planes import Planes, open_planes
from mlsvc.service.batch_predictions import BatchPredictions
from mlsvc.service.common import ListQuery
from mlsvc.service.datasources import DataSources
from mlsvc.service.evaluations import Evaluations
from mlsvc.service.models import Models
from mlsvc.service.predictions import PredictionOutcome, Predictions
from mlsvc.service.refs import ModelRefs

INTEGRITY_WINDOW_S = 900  # how long a refused load keeps the readiness check failing

__all__ = ["ListQuery", "PredictionOutcome", "Readiness", "Service", "ServiceFigures"]


@dataclass(frozen=True)
class Readiness:
    """Whether this process can serve: each check's outcome ("ok" or what is wrong)."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(outcome == "ok" for outcome in self.checks.values())


@dataclass(frozen=True)
class ServiceFigures:
    """Figures of the whole deployment (every process's work), read from the metadata store."""

    jobs_by_state: dict[str, int]
    batch_rows_scored: int
    integrity_failures: int


class Service:
    """The operations of every resource over one process's planes."""

    def __init__(self, settings: Settings, metadata: SqlMetadataStore | None = None) -> None:
        self.settings = settings
        self.planes: Planes = open_planes(settings, metadata)
        store, attempts = self.planes.metadata, settings.job_max_attempts
        refs = ModelRefs(store)
        self.predictions = Predictions(store, self.planes.registry, refs, settings.max_predict_records)
        self.datasources = DataSources(store, self.planes.uris, attempts, settings)
        self.models = Models(store, self.planes.registry, refs, self.predictions.warm, attempts, self.planes.uris)
        self.evaluations = Evaluations(store, refs, attempts)
        self.batch_predictions = BatchPredictions(store, self.planes.uris, refs, attempts)

    def figures(self) -> ServiceFigures:
        store = self.planes.metadata
        refused, _ = store.integrity_failures()
        return ServiceFigures(store.job_counts(), store.batch_rows_scored(), refused)

    def readiness(self) -> Readiness:
        """The metadata store answers, the registry answers, and every ``production`` alias's version loads."""
        checks = {
            "metadata": _outcome(self.planes.metadata.job_counts),
            "registry": _outcome(self.planes.registry.initialize),
        }
        if checks["metadata"] == "ok":
            checks["artifacts"] = _outcome(self._no_recent_refusal)
            for name, version in self.planes.metadata.alias_targets("production"):
                checks[f"model {name}:production"] = _outcome(partial(self._load, name, version))
        return Readiness(checks)

    def _load(self, name: str, version: int) -> None:
        model = self.planes.metadata.model_by_version(name, version)
        if model is None:
            raise LookupError(f"version {version} is gone")
        self.predictions.warm(model)

    def _no_recent_refusal(self) -> None:
        """A model whose files failed their check, in any process, in the last INTEGRITY_WINDOW_S: an operator
        must look (the load that failed will fail everywhere until the files are restored)."""
        count, last = self.planes.metadata.integrity_failures()
        if last is not None and (utcnow() - last["at"]).total_seconds() < INTEGRITY_WINDOW_S:
            raise IntegrityRefusal(
                f"{count} model load(s) refused; latest: {last['label']}: {'; '.join(last['problems'])}"
            )

    def close(self) -> None:
        self.planes.close()


class IntegrityRefusal(Exception):
    """A model's stored files failed their integrity check recently."""


def _outcome(check: Callable[[], object]) -> str:
    """ "ok", or the failure in one line (its type and message), for an operator to act on."""
    try:
        check()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return "ok"
