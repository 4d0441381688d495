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
from mlsvc.metadata import Document
from mlsvc.prediction.labels import DEFAULT_THRESHOLD
from mlsvc.registry import ArtifactRef
from mlsvc.resources import ModelType, Schema
from mlsvc.training import data as training_data
from mlsvc.training.evaluation import evaluate, summary_metrics
from mlsvc.training.loop import default_budget_s, predict_output, train
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, selection_score
from mlsvc.training.promotion import Challenger, promote
from mlsvc.training.recipe import default_recipe, merge_recipe
from mlsvc.training.results import model_metrics, record_evaluation, register

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext

HOLDOUT_FRACTION = 0.2
MIN_ROWS = 20


def run(ctx: JobContext) -> Mapping[str, Any]:
    model = ctx.resource
    ds = ctx.completed("datasource", model["datasource_id"])
    model_type = ModelType(model["model_type"]) if model.get("model_type") else None
    target = _target(model, ds)
    seed = int(model.get("seed", 0))
    data = training_data.load(
        ctx.objects,
        ds,
        target,
        model_type,
        lambda f: ctx.progress(0.02 + 0.08 * f),
        ctx.settings.max_record_bytes,
    )
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
    figures = summary_metrics(insights)
    params = {"target": target, "model_type": data.model_type.value, "time_budget_s": budget, "seed": seed}
    registered = register(ctx, model, outcome.pipeline, fit.X.head(5), params, figures, outcome, leaderboard)
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
        "metrics": model_metrics(outcome, figures),
        "leaderboard": leaderboard,
        "importances": importances,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        **registered.artifact_fields(),
        "evaluation_id": record_evaluation(ctx, model, registered.version, insights, figures),
        "training_rows": len(fit.X),
        "holdout_rows": len(holdout.X),
    }
    ctx.progress(0.97, **fields)
    fields["promotion"] = _promote(ctx, model, registered.version, data, holdout, output)
    return fields


def _promote(
    ctx: JobContext,
    model: Mapping[str, Any],
    version: int,
    data: training_data.TrainingData,
    holdout: training_data.TrainingData,
    output: np.ndarray,
) -> dict[str, Any]:
    """The new version against production, each scoring this version's held-out rows."""
    metric = SELECTION_METRIC[data.model_type]
    score = selection_score(data.model_type, holdout.y, output)
    challenger = Challenger(version, score, metric, HIGHER_IS_BETTER[metric], "on the same held-out rows")
    return promote(ctx, model, challenger, lambda incumbent: _score_incumbent(ctx, incumbent, data, holdout))


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


def _score_incumbent(
    ctx: JobContext, incumbent: Document, data: training_data.TrainingData, holdout: training_data.TrainingData
) -> float:
    """The production version's score on the new version's held-out rows; raises when it cannot score them."""
    if incumbent.get("model_type") != data.model_type.value:
        raise ValueError("it is of another model type")
    if data.classes is not None and incumbent.get("classes") != data.classes:
        raise ValueError("it predicts other classes")
    pipeline = ctx.registry.load(ArtifactRef.of(incumbent))
    X = holdout.X.copy()
    for feature in incumbent["features"]:
        if feature["attributeName"] not in X.columns:
            X[feature["attributeName"]] = np.nan if feature["attributeType"] in ("NUMERIC", "BINARY") else None
    output = predict_output(
        pipeline, data.model_type, X[[f["attributeName"] for f in incumbent["features"]]], len(data.classes or [])
    )
    return selection_score(data.model_type, holdout.y, output)
