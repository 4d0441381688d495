"""The RECOMMENDATION model job: read the interactions (and item attributes), run the recommender loop,
record its holdout evaluation and register the winner as the next version of the model's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsvc.metadata import Document
from mlsvc.recommendation.loop import RecommenderOutcome, train_recommender
from mlsvc.recommendation.metrics import summary_metrics
from mlsvc.training import data as training_data
from mlsvc.training.promotion import Challenger, promote
from mlsvc.training.results import Shown, annotate, model_metrics, record_evaluation, register

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext


def run(ctx: JobContext) -> Mapping[str, Any]:
    model = ctx.resource
    ds = ctx.completed("datasource", model["datasource_id"])
    limit = ctx.settings.max_record_bytes
    interactions = training_data.read_table(ctx.objects, ds, lambda f: ctx.progress(0.02 + 0.08 * f), limit)
    k = int(model.get("k") or 10)
    seed = int(model.get("seed", 0))
    outcome = train_recommender(
        interactions,
        model.get("roles"),
        k=k,
        seed=seed,
        budget_s=model.get("time_budget_s"),
        items_frame=_items(ctx, model),
        on_progress=lambda f, message: ctx.progress(0.1 + 0.75 * f, message=message),
    )
    recommender = outcome.model
    roles = recommender.roles_  # the columns as the loop resolved them
    user_column = roles["user"]
    # A few users, as MLflow's pyfunc of the model reads them (a user_id column, as the API's user_id).
    example = pd.DataFrame({"user_id": interactions[user_column].dropna().astype(str).head(3).tolist()})
    figures = summary_metrics(outcome.evaluation)
    budget = model.get("time_budget_s") or "default"
    params = {"model_type": "RECOMMENDATION", "k": k, "split": outcome.split, "seed": seed, "time_budget_s": budget}
    scoring = {"model_type": "RECOMMENDATION", "roles": roles, "k": k}
    shown = Shown(scoring, outcome.evaluation, {"schema": scoring})
    registered = register(ctx, model, recommender, example, params, figures, outcome, outcome.leaderboard, shown)
    # mlsvc's number, given at create; the registry's is the same unless a retried job had registered before.
    version = int(model.get("version") or registered.version)
    fields = {
        "version": version,
        "model_type": "RECOMMENDATION",
        "roles": roles,
        "k": k,
        "features": [],
        "classes": None,
        "score_threshold": None,
        "metrics": model_metrics(outcome, figures),
        "leaderboard": outcome.leaderboard,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        **registered.artifact_fields(),
        "evaluation_id": record_evaluation(ctx, model, version, outcome.evaluation, figures),
        "training_rows": len(interactions),
        "holdout_rows": outcome.evaluation.get("rows"),
    }
    ctx.progress(0.97, **fields)
    fields["promotion"] = _promote(ctx, model, version, outcome)
    annotate(ctx, model, fields, outcome.evaluation)
    return fields


def _items(ctx: JobContext, model: Mapping[str, Any]) -> pd.DataFrame | None:
    if not model.get("items_datasource_id"):
        return None
    items = ctx.completed("datasource", model["items_datasource_id"], "items datasource")
    return training_data.read_table(ctx.objects, items, lambda f: None, ctx.settings.max_record_bytes)


def _promote(ctx: JobContext, model: Mapping[str, Any], version: int, outcome: RecommenderOutcome) -> dict[str, Any]:
    """The new version against production by holdout NDCG, each on its own holdout: a recommender's holdout is
    the last items of its own users, so production's is the figure its training recorded."""
    challenger = Challenger(version, outcome.evaluation["value"], outcome.metric, True, "each on its own holdout")
    return promote(ctx, model, challenger, lambda incumbent: _recorded_score(ctx, incumbent))


def _recorded_score(ctx: JobContext, incumbent: Document) -> float:
    if incumbent.get("model_type") != "RECOMMENDATION":
        raise ValueError("it is not a RECOMMENDATION model")
    return float(ctx.metadata.get("evaluation", incumbent["evaluation_id"])["value"])
