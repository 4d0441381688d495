"""The one table of job kinds and their handlers, each a ``run(ctx) -> fields`` imported on first use, and the
kinds that leave something to clean up when they end without their result."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.jobs.context import JobContext
from mlsvc.metadata import Document

if TYPE_CHECKING:
    from mlsvc.planes import Planes

Handler = Callable[[JobContext], Mapping[str, Any]]
Cleanup = Callable[["Planes", Document], None]

# By "module:function", imported on first use so that a worker only loads (say) MLflow when it trains.
HANDLERS: dict[str, str] = {
    "datasource.create": "mlsvc.datasources.job:run",
    "model.train": "mlsvc.training.job:run",
    "recommender.train": "mlsvc.recommendation.job:run",
    "evaluation.run": "mlsvc.training.evaluation_job:run",
    "batch_prediction.run": "mlsvc.prediction.batch_job:run",
}

# What a job that ended without its result (failed, cancelled by a delete, given up after its worker died) may
# have left behind, removed by the worker that records the end: "module:function", called with the resource.
CLEANUPS: dict[str, str] = {
    "datasource.create": "mlsvc.datasources.sql:discard",
    "model.train": "mlsvc.training.results:discard",
    "recommender.train": "mlsvc.training.results:discard",
    "batch_prediction.run": "mlsvc.prediction.batch_job:discard",
}


def kind_of(kind: str, resource: Mapping[str, Any]) -> str:
    """The kind a job really is: rows queued before "recommender.train" existed call a RECOMMENDATION model's
    job "model.train"."""
    if kind == "model.train" and resource.get("model_type") == "RECOMMENDATION":
        return "recommender.train"
    return kind


def load_handler(kind: str) -> Handler:
    module, _, attr = HANDLERS[kind].partition(":")
    handler: Handler = getattr(importlib.import_module(module), attr)
    return handler


def load_cleanup(kind: str) -> Cleanup | None:
    if kind not in CLEANUPS:
        return None
    module, _, attr = CLEANUPS[kind].partition(":")
    cleanup: Cleanup = getattr(importlib.import_module(module), attr)
    return cleanup
