"""The model job: load the datasource, run the loop, register the winner as the next version of the name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.registry import Registry
from mlsvc.resources import ModelType, Schema
from mlsvc.training import data as training_data
from mlsvc.training.loop import train

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext

DEFAULT_THRESHOLD = 0.5


def run(ctx: JobContext) -> Mapping[str, Any]:
    model = ctx.resource
    ds = ctx.store.get("datasource", model["datasource_id"])
    if ds["status"] != "COMPLETED":
        raise MlsvcError(ErrorCode.NOT_READY, f"datasource '{ds['id']}' is {ds['status']}, not COMPLETED")
    target = _target(model, ds)
    model_type = ModelType(model["model_type"]) if model.get("model_type") else None
    data = training_data.load(ctx.storage, ds, target, model_type, lambda f: ctx.progress(0.05 + 0.25 * f))
    ctx.progress(0.3, model_type=data.model_type.value, target=target, classes=data.classes,
                 message=f"training on {len(data.X)} rows")
    outcome = train(data, int(model.get("seed", 0)), lambda f: ctx.progress(0.3 + 0.55 * f))
    leaderboard = json.loads(json.dumps(outcome.leaderboard, default=str))
    registry = Registry(ctx.settings)
    registered = registry.log_model(
        model["name"], outcome.pipeline, data.X.head(5),
        params={"model_id": model["id"], "datasource_id": ds["id"], "target": target,
                "model_type": data.model_type.value, "selected": _selected(leaderboard)},
        metrics=outcome.metrics, leaderboard=leaderboard, tags={"mlsvc.model_id": model["id"]},
    )
    fields = {
        "version": registered.version,
        "model_type": data.model_type.value,
        "target": target,
        "classes": data.classes,
        "positive_label": data.positive_label,
        "score_threshold": DEFAULT_THRESHOLD if data.model_type == ModelType.BINARY else None,
        "features": [a.model_dump(mode="json") for a in data.features],
        "recipe": outcome.recipe,
        "metrics": {"selection_metric": outcome.metric, **outcome.metrics, "holdout_rows": _holdout_rows(data)},
        "leaderboard": leaderboard,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        "training_rows": len(data.X),
    }
    ctx.progress(0.95, **fields)
    _promote(ctx, registry, model, registered.version)
    return fields


def _target(model: Mapping[str, Any], ds: Mapping[str, Any]) -> str:
    target = model.get("target") or Schema.model_validate(ds["schema"]).targetAttributeName
    if not target:
        raise MlsvcError(ErrorCode.INVALID_REQUEST,
                         f"no target: datasource '{ds['id']}' names none; give 'target' when creating the model")
    return str(target)


def _selected(leaderboard: list[dict[str, Any]]) -> str:
    return next(row["candidate"] for row in leaderboard if row.get("selected"))


def _holdout_rows(data: training_data.TrainingData) -> int:
    from mlsvc.training.loop import HOLDOUT_FRACTION

    return round(len(data.X) * HOLDOUT_FRACTION)


def _promote(ctx: JobContext, registry: Registry, model: Mapping[str, Any], version: int) -> None:
    """``promote: auto`` makes the first version of a name its ``production`` version."""
    if model.get("promote", "auto") != "auto":
        return
    if ctx.store.alias_version(model["name"], "production") is None:
        ctx.store.set_alias(model["name"], "production", version)
        registry.set_alias(model["name"], "production", version)
