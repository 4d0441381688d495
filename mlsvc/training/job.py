"""The model job: hold out rows, run the loop on the rest, evaluate the winner on the held-out rows,
register it as the next version of its name, and promote it when it beats production."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.inspection import permutation_importance

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata.sql import utcnow
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.resources import ModelType, Schema
from mlsvc.training import data as training_data
from mlsvc.training.evaluation import evaluate, summary_metrics
from mlsvc.training.loop import default_budget_s, predict_output, train
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, selection_score
from mlsvc.training.recipe import default_recipe, merge_recipe

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext

DEFAULT_THRESHOLD = 0.5
HOLDOUT_FRACTION = 0.2
MIN_ROWS = 20


def run(ctx: JobContext) -> Mapping[str, Any]:
    model = ctx.resource
    ds = ctx.store.get("datasource", model["datasource_id"])
    if ds["status"] != "COMPLETED":
        raise MlsvcError(ErrorCode.NOT_READY, f"datasource '{ds['id']}' is {ds['status']}, not COMPLETED")
    model_type = ModelType(model["model_type"]) if model.get("model_type") else None
    if model_type == ModelType.RECOMMENDATION:
        from mlsvc.recommendation.job import run as run_recommendation

        return run_recommendation(ctx, model, ds)
    target = _target(model, ds)
    seed = int(model.get("seed", 0))
    data = training_data.load(ctx.storage, ds, target, model_type, lambda f: ctx.progress(0.02 + 0.08 * f))
    if len(data.X) < MIN_ROWS:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"only {len(data.X)} rows have a target value; "
            f"at least {MIN_ROWS} are needed to train and evaluate a model",
        )
    fit, holdout = training_data.split_holdout(data, HOLDOUT_FRACTION, seed)
    recipe = merge_recipe(default_recipe(data.features, _cardinality(fit.X)), model.get("recipe"), data.features)
    budget = float(model.get("time_budget_s") or default_budget_s(len(fit.X), len(data.features)))
    ctx.progress(
        0.1,
        model_type=data.model_type.value,
        target=target,
        classes=data.classes,
        recipe=recipe,
        time_budget_s=budget,
        message=f"searching on {len(fit.X)} rows, {len(holdout.X)} held out",
    )
    outcome = train(
        fit,
        recipe,
        seed=seed,
        budget_s=budget,
        n_jobs=_cores(),
        on_progress=lambda f, message: ctx.progress(0.1 + 0.75 * f, message=message),
    )
    output = predict_output(outcome.pipeline, data.model_type, holdout.X, len(data.classes or []))
    insights = evaluate(data.model_type, holdout.y, output, data.classes, DEFAULT_THRESHOLD)
    ctx.progress(0.88, message="measuring attribute importances on the held-out rows")
    importances = attribute_importances(outcome.pipeline, data.model_type, holdout, seed)
    leaderboard = json.loads(json.dumps(outcome.leaderboard, default=str))
    ctx.progress(0.9, message="registering the model in MLflow")
    registry = MlflowRegistry(ctx.settings)
    registered = registry.log_model(
        model["name"],
        outcome.pipeline,
        fit.X.head(5),
        params={
            "model_id": model["id"],
            "datasource_id": ds["id"],
            "target": target,
            "model_type": data.model_type.value,
            "selected": outcome.selected,
            "time_budget_s": budget,
            "seed": seed,
        },
        metrics={**summary_metrics(insights), "validation_score": outcome.validation_score},
        leaderboard=leaderboard,
        tags={"mlsvc.model_id": model["id"]},
    )
    evaluation_id = record_evaluation(ctx, model, ds, registered.version, insights, summary_metrics(insights))
    fields = {
        "version": registered.version,
        "model_type": data.model_type.value,
        "target": target,
        "classes": data.classes,
        "positive_label": data.positive_label,
        "score_threshold": DEFAULT_THRESHOLD if data.model_type == ModelType.BINARY else None,
        "features": [a.model_dump(mode="json") for a in data.features],
        "recipe": recipe,
        "time_budget_s": budget,
        "metrics": {
            "selection_metric": outcome.metric,
            "validation_score": outcome.validation_score,
            **summary_metrics(insights),
            "search_s": round(outcome.search_s, 3),
            "refit_s": round(outcome.refit_s, 3),
            "selected": outcome.selected,
        },
        "leaderboard": leaderboard,
        "importances": importances,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        "evaluation_id": evaluation_id,
        "training_rows": len(fit.X),
        "holdout_rows": len(holdout.X),
    }
    ctx.progress(0.97, **fields)
    fields["promotion"] = _promote(ctx, registry, model, registered.version, data, holdout, output)
    return fields


IMPORTANCE_ROWS = 2000
IMPORTANCE_SCORING = {
    ModelType.BINARY: "roc_auc",
    ModelType.MULTICLASS: "f1_macro",
    ModelType.REGRESSION: "neg_root_mean_squared_error",
}


def attribute_importances(
    pipeline: Any, model_type: ModelType, holdout: training_data.TrainingData, seed: int
) -> list[dict[str, Any]]:
    """How much the held-out score drops when each attribute's values are shuffled, most important first."""
    n = min(len(holdout.X), IMPORTANCE_ROWS)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(holdout.X), n, replace=False))
    X, y = holdout.X.iloc[idx], holdout.y[idx]
    if model_type == ModelType.BINARY and len(np.unique(y)) < 2:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = permutation_importance(
            pipeline, X, y, scoring=IMPORTANCE_SCORING[model_type], n_repeats=3, random_state=seed
        )
    ranked = sorted(
        zip(X.columns, result.importances_mean, result.importances_std, strict=True), key=lambda item: -item[1]
    )
    return [{"attribute": str(name), "importance": float(mean), "std": float(std)} for name, mean, std in ranked]


def _target(model: Mapping[str, Any], ds: Mapping[str, Any]) -> str:
    target = model.get("target") or Schema.model_validate(ds["schema"]).targetAttributeName
    if not target:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"no target: datasource '{ds['id']}' names none; give 'target' when creating the model",
        )
    return str(target)


def _cardinality(X: Any) -> dict[str, int]:
    return {c: int(X[c].nunique()) for c in X.columns if X[c].dtype == object}


def _cores() -> int:
    """The cores this worker may use (its share, set by the worker process)."""
    return int(os.environ.get("OMP_NUM_THREADS", "0")) or (os.cpu_count() or 1)


def record_evaluation(
    ctx: JobContext,
    model: Mapping[str, Any],
    ds: Mapping[str, Any],
    version: int,
    insights: dict[str, Any],
    figures: dict[str, float],
) -> str:
    """The evaluation on the held-out rows, stored as a COMPLETED Evaluation resource of its own."""
    evaluation_id = f"ev-{model['id']}-holdout"
    now = utcnow()
    record = {
        "id": evaluation_id,
        "name": f"{model['name']} v{version} holdout",
        "status": "COMPLETED",
        "message": "",
        "progress": 1.0,
        "created_at": now,
        "updated_at": now,
        "model": f"{model['name']}:{version}",
        "model_id": model["id"],
        "model_version": version,
        "datasource_id": ds["id"],
        "holdout": True,
        **evaluation_fields(insights, figures),
    }
    # The job may run again after a lost worker: the same id and request make the second write a no-op.
    ctx.store.create("evaluation", record, f"holdout:{model['id']}", {}, None)
    return evaluation_id


def evaluation_fields(insights: dict[str, Any], figures: dict[str, float] | None = None) -> dict[str, Any]:
    """An evaluation resource's fields from an evaluation (``figures``: its flat metrics, if not the default)."""
    return {
        "model_type": insights["model_type"],
        "metric": insights["metric"],
        "value": insights["value"],
        "baseline": insights["baseline"],
        "vs_baseline": insights["vs_baseline"],
        "metrics": figures if figures is not None else summary_metrics(insights),
        "insights": insights,
        "rows": insights["rows"],
    }


def _promote(
    ctx: JobContext,
    registry: MlflowRegistry,
    model: Mapping[str, Any],
    version: int,
    data: training_data.TrainingData,
    holdout: training_data.TrainingData,
    output: np.ndarray,
) -> dict[str, Any]:
    """``promote: auto``: the new version becomes ``production`` if there is none, or if it beats the current
    production version on this model's held-out rows."""
    name = model["name"]
    if model.get("promote", "auto") != "auto":
        return {"promoted": False, "reason": "promote is 'never'"}
    current, incumbent = incumbent_production(ctx, name)
    if current is None:
        set_production(ctx, registry, name, version)
        return {"promoted": True, "reason": f"the first production version of '{name}'"}
    challenger = selection_score(data.model_type, holdout.y, output)
    try:
        champion = _score_incumbent(registry, incumbent, data, holdout)
    except Exception as exc:  # an incumbent that cannot score this data loses
        set_production(ctx, registry, name, version)
        return {"promoted": True, "reason": f"production v{current} could not score these rows ({exc})"}
    metric = SELECTION_METRIC[data.model_type]
    better = challenger >= champion if HIGHER_IS_BETTER[metric] else challenger <= champion
    comparison = f"{metric} {challenger:.4f} vs {champion:.4f} for production v{current} on the same held-out rows"
    if better:
        set_production(ctx, registry, name, version)
        return {"promoted": True, "reason": comparison, "previous_version": current}
    return {"promoted": False, "reason": comparison, "production_version": current}


def _score_incumbent(
    registry: MlflowRegistry,
    incumbent: Mapping[str, Any] | None,
    data: training_data.TrainingData,
    holdout: training_data.TrainingData,
) -> float:
    if incumbent is None or incumbent.get("model_type") != data.model_type.value:
        raise ValueError("it is of another model type")
    if data.classes is not None and incumbent.get("classes") != data.classes:
        raise ValueError("it predicts other classes")
    pipeline = registry.load(incumbent["model_uri"])
    X = holdout.X.copy()
    for feature in incumbent["features"]:
        if feature["attributeName"] not in X.columns:
            X[feature["attributeName"]] = np.nan if feature["attributeType"] in ("NUMERIC", "BINARY") else None
    output = predict_output(
        pipeline, data.model_type, X[[f["attributeName"] for f in incumbent["features"]]], len(data.classes or [])
    )
    return selection_score(data.model_type, holdout.y, output)


def set_production(ctx: JobContext, registry: MlflowRegistry, name: str, version: int) -> None:
    """Make ``version`` production when the job's result is recorded (in its transaction), then tell MLflow."""
    ctx.aliases.append((name, "production", version))
    ctx.after_complete.append(lambda: registry.set_alias(name, "production", version))


def incumbent_production(ctx: JobContext, name: str) -> tuple[int | None, dict[str, Any] | None]:
    """The production version of ``name`` and its model, if it is COMPLETED (a deleted one does not count)."""
    current = ctx.store.alias_version(name, "production")
    incumbent = ctx.store.model_by_version(name, current) if current is not None else None
    if incumbent is None or incumbent["status"] != "COMPLETED":
        return None, None
    return current, incumbent
