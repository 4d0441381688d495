"""The model job: hold out rows, run the loop on the rest, evaluate the winner on the held-out rows,
register it as the next version of its name, and promote it when it beats production."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Document
from mlsvc.prediction.labels import DEFAULT_THRESHOLD
from mlsvc.registry import ArtifactRef
from mlsvc.resources import Attribute, ModelType
from mlsvc.training import data as training_data
from mlsvc.training.budget import JobClock
from mlsvc.training.distributed import ClusterFanOut
from mlsvc.training.evaluation import evaluate, summary_metrics
from mlsvc.training.importances import attribute_importances
from mlsvc.training.levels import known_levels
from mlsvc.training.loop import Outcome, default_budget_s, predict_output, train
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, selection_score
from mlsvc.training.promotion import Challenger, promote
from mlsvc.training.recipe import default_recipe, merge_recipe, parse_recipe_json
from mlsvc.training.results import Shown, annotate, model_metrics, record_evaluation, register

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext

HOLDOUT_FRACTION = 0.2
MIN_ROWS = 20
# Held-out rows evaluated in full; a larger holdout is sampled down to what its time allows, never below this.
EVALUATION_ROWS = 50_000
RECIPE_FILE_LIMIT = 1024 * 1024  # the most of a recipe_uri file read (a schema file's limit too)


def run(ctx: JobContext) -> Mapping[str, Any]:
    started = time.monotonic()  # the budget covers the whole job, reading the data included
    model = ctx.resource
    ds = ctx.completed("datasource", model["datasource_id"])
    model_type = ModelType(model["model_type"]) if model.get("model_type") else None
    target = _target(model, ds)
    seed = int(model.get("seed", 0))
    given_recipe = _given_recipe(ctx, model)  # before the data: a recipe that cannot be read fails fast
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
    lone = training_data.lone_classes(data, target)
    fit, held_out = training_data.split_holdout(data, HOLDOUT_FRACTION, seed)
    recipe = _recipe(model, given_recipe, data.features, _cardinality(fit.X))
    budget = float(model.get("time_budget_s") or default_budget_s(len(fit.X), len(data.features)))
    clock = JobClock(budget, started)
    clock.lap("load")
    search_budget = clock.search_budget(len(data.features))
    ctx.progress(
        0.1,
        model_type=data.model_type.value,
        target=target,
        classes=data.classes,
        recipe=recipe,
        time_budget_s=budget,
        message=f"searching on {len(fit.X)} rows, {len(held_out.X)} held out, for {search_budget:.1f} s",
    )
    client = None
    if ctx.settings.dask_scheduler:
        from mlsvc.jobs.cluster import connect

        client = connect(ctx.settings)
    try:
        outcome = train(
            fit,
            recipe,
            seed=seed,
            budget_s=search_budget,
            n_jobs=_cores(),
            on_progress=lambda f, message: ctx.progress(0.1 + 0.75 * f, message=message),
            fixed=[(c["family"], c.get("params") or {}) for c in model.get("candidates") or []] or None,
            fan_out=ClusterFanOut(client) if client is not None else None,
        )
    finally:
        if client is not None:
            client.close()
    clock.notes.extend(outcome.notes)
    clock.lap("search")
    phases_end = clock.elapsed + clock.before_registration(len(data.features))
    holdout = _evaluated_rows(held_out, outcome, (phases_end - clock.elapsed) / 2, seed, clock)
    output = predict_output(outcome.pipeline, data.model_type, holdout.X, len(data.classes or []))
    insights = evaluate(data.model_type, holdout.y, output, data.classes, DEFAULT_THRESHOLD)
    clock.lap("evaluation")
    ctx.progress(0.88, message="measuring attribute importances on the held-out rows")
    found = attribute_importances(
        outcome.pipeline, data.model_type, len(data.classes or []), holdout, seed, phases_end - clock.elapsed
    )
    clock.notes.extend([found.note] if found.note else [])
    clock.lap("importances")
    leaderboard = json.loads(json.dumps(outcome.leaderboard, default=str))
    figures = summary_metrics(insights)
    params = {"target": target, "model_type": data.model_type.value, "time_budget_s": budget, "seed": seed}
    # What scoring reads of the model: also saved with the MLflow version, whose pyfunc scores as the API does.
    scoring = {
        "model_type": data.model_type.value,
        "target": target,
        "classes": data.classes,
        "positive_label": data.positive_label,
        "score_threshold": DEFAULT_THRESHOLD if data.model_type == ModelType.BINARY else None,
        "features": [a.model_dump(mode="json") for a in data.features],
        "levels": known_levels(fit.X, data.features),
    }
    shown = Shown(scoring, insights, {"schema": scoring, "recipe": recipe, "importances": found.ranked})
    registered = register(ctx, model, outcome.pipeline, fit.X.head(5), params, figures, outcome, leaderboard, shown)
    clock.lap("registration")
    # mlsvc's number, given at create; the registry's is the same unless a retried job had registered before.
    version = int(model.get("version") or registered.version)
    fields = {
        "version": version,
        **scoring,
        "recipe": recipe,
        "time_budget_s": budget,
        "metrics": {**model_metrics(outcome, figures), "timings_s": clock.laps},
        "leaderboard": leaderboard,
        "importances": found.ranked,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        **registered.artifact_fields(),
        "evaluation_id": record_evaluation(ctx, model, version, insights, figures),
        "training_rows": len(fit.X),
        "holdout_rows": len(held_out.X),
        "message": " ".join(m for m in (clock.message(), _lone_message(lone)) if m),
    }
    ctx.progress(0.97, **fields)
    fields["promotion"] = _promote(ctx, model, version, data, holdout, output)
    annotate(ctx, model, fields, insights)
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


def _evaluated_rows(
    held_out: training_data.TrainingData, outcome: Outcome, allowance_s: float, seed: int, clock: JobClock
) -> training_data.TrainingData:
    """The held-out rows the evaluation scores: all of them, unless predicting them all would take longer than
    ``allowance_s`` at the selected pipeline's pace; then a stratified sample of what fits (at least
    ``EVALUATION_ROWS``), which the message names."""
    n = len(held_out.X)
    affordable = int(allowance_s / outcome.predict_s_per_row) if outcome.predict_s_per_row > 0 else n
    rows = max(EVALUATION_ROWS, affordable)
    if rows >= n:
        return held_out
    clock.notes.append(f"the holdout evaluation scored a sample of {rows:,} of the {n:,} held-out rows")
    return training_data.sample(held_out, rows, seed)


def _lone_message(lone: list[str]) -> str:
    """What the message says of classes with a single row."""
    if not lone:
        return ""
    shown = ", ".join(f"'{label}'" for label in lone[:5]) + (f" and {len(lone) - 5} more" if len(lone) > 5 else "")
    if len(lone) == 1:
        return (
            f"The class {shown} has a single row: it is trained on, but cannot be held out or stratified, so the "
            "holdout evaluation does not cover it."
        )
    return (
        f"The classes {shown} have a single row each: they are trained on, but cannot be held out or stratified, "
        "so the holdout evaluation does not cover them."
    )


def _given_recipe(ctx: JobContext, model: Mapping[str, Any]) -> Any:
    """The recipe as given: inline, or the JSON document at recipe_uri (read whole, up to a limit)."""
    uri = model.get("recipe_uri")
    if not uri:
        return model.get("recipe")
    try:
        return parse_recipe_json(ctx.objects.read_bytes(uri, RECIPE_FILE_LIMIT), "the recipe")
    except MlsvcError as exc:
        raise MlsvcError(exc.code, f"recipe_uri {uri}: {exc.message}", {**exc.details, "recipe_uri": uri}) from exc


def _recipe(
    model: Mapping[str, Any], given: Any, features: list[Attribute], cardinality: dict[str, int]
) -> dict[str, Any]:
    """The recipe the model trains with, checked against the features; one read from recipe_uri says so when it
    is wrong (an inline one was checked at create)."""
    try:
        return merge_recipe(default_recipe(features, cardinality), given, features)
    except MlsvcError as exc:
        uri = model.get("recipe_uri")
        if not uri:
            raise
        raise MlsvcError(exc.code, f"recipe_uri {uri}: {exc.message}", {**exc.details, "recipe_uri": uri}) from exc


def _target(model: Mapping[str, Any], ds: Mapping[str, Any]) -> str:
    # Read from the stored schema, which was validated when stored: validating 10,000 attributes again costs seconds.
    target = model.get("target") or (ds.get("schema") or {}).get("targetAttributeName")
    if not target:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"no target: datasource '{ds['id']}' names none; give 'target' when creating the model",
        )
    return str(target)


def _cardinality(X: Any) -> dict[str, int]:
    """The distinct values of each categorical (object) column, counted without a Python loop over the columns."""
    return {str(c): int(n) for c, n in X.select_dtypes(include="object").nunique().items()}


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
