"""The one table of job kinds and their handlers, each a ``run(ctx) -> fields`` imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from mlsvc.jobs.context import JobContext

Handler = Callable[[JobContext], Mapping[str, Any]]

# By "module:function", imported on first use so that a worker only loads (say) MLflow when it trains.
HANDLERS: dict[str, str] = {
    "datasource.create": "mlsvc.datasources.job:run",
    "model.train": "mlsvc.training.job:run",
    "recommender.train": "mlsvc.recommendation.job:run",
    "evaluation.run": "mlsvc.training.evaluation_job:run",
    "batch_prediction.run": "mlsvc.prediction.batch_job:run",
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
