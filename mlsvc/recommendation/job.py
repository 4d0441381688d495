"""The RECOMMENDATION model job: read the interactions (and item attributes), run the recommender loop,
record its holdout evaluation and register the winner as the next version of the model's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.recommendation.loop import train_recommender
from mlsvc.recommendation.metrics import summary_metrics
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.training import data as training_data
from mlsvc.training.job import incumbent_production, record_evaluation, set_production

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext


def run(ctx: JobContext, model: Mapping[str, Any], ds: Mapping[str, Any]) -> Mapping[str, Any]:
    interactions = training_data.read_table(ctx.storage, ds, lambda f: ctx.progress(0.02 + 0.08 * f))
    items = _items(ctx, model)
    k = int(model.get("k") or 10)
    seed = int(model.get("seed", 0))
    outcome = train_recommender(
        interactions,
        model.get("roles"),
        k=k,
        seed=seed,
        budget_s=model.get("time_budget_s"),
        items_frame=items,
        on_progress=lambda f, message: ctx.progress(0.1 + 0.75 * f, message=message),
    )
    recommender = outcome.model
    ctx.progress(0.9, message="registering the model in MLflow")
    user_column = recommender.roles["user"]
    example = pd.DataFrame({user_column: interactions[user_column].dropna().astype(str).head(3).tolist()})
    registry = MlflowRegistry(ctx.settings)
    figures = summary_metrics(outcome.evaluation)
    registered = registry.log_model(
        model["name"],
        recommender,
        example,
        params={
            "model_id": model["id"],
            "datasource_id": ds["id"],
            "model_type": "RECOMMENDATION",
            "k": k,
            "selected": outcome.selected,
            "split": outcome.split,
            "seed": seed,
        },
        metrics={**figures, "validation_score": outcome.validation_score},
        leaderboard=outcome.leaderboard,
        tags={"mlsvc.model_id": model["id"]},
    )
    evaluation_id = record_evaluation(ctx, model, ds, registered.version, outcome.evaluation, figures)
    fields = {
        "version": registered.version,
        "model_type": "RECOMMENDATION",
        "roles": recommender.roles,
        "k": k,
        "features": [],
        "classes": None,
        "score_threshold": None,
        "metrics": {
            "selection_metric": outcome.metric,
            "validation_score": outcome.validation_score,
            **figures,
            "search_s": round(outcome.search_s, 3),
            "refit_s": round(outcome.refit_s, 3),
            "selected": outcome.selected,
        },
        "leaderboard": outcome.leaderboard,
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        "evaluation_id": evaluation_id,
        "training_rows": len(interactions),
        "holdout_rows": outcome.evaluation.get("rows"),
    }
    ctx.progress(0.97, **fields)
    fields["promotion"] = _promote(ctx, registry, model, registered.version, outcome.evaluation["value"])
    return fields


def _items(ctx: JobContext, model: Mapping[str, Any]) -> pd.DataFrame | None:
    if not model.get("items_datasource_id"):
        return None
    items = ctx.store.get("datasource", model["items_datasource_id"])
    if items["status"] != "COMPLETED":
        raise MlsvcError(ErrorCode.NOT_READY, f"items datasource '{items['id']}' is {items['status']}, not COMPLETED")
    return training_data.read_table(ctx.storage, items, lambda f: None)


def _promote(
    ctx: JobContext, registry: MlflowRegistry, model: Mapping[str, Any], version: int, ndcg: float
) -> dict[str, Any]:
    """The first version becomes production; a later one when its holdout NDCG beats production's recorded
    holdout NDCG (each on its own holdout: a recommender's holdout is the last items of its own users)."""
    name = model["name"]
    if model.get("promote", "auto") != "auto":
        return {"promoted": False, "reason": "promote is 'never'"}
    current, incumbent = incumbent_production(ctx, name)
    if incumbent is None or incumbent.get("model_type") != "RECOMMENDATION":
        set_production(ctx, registry, name, version)
        return {"promoted": True, "reason": f"the first production version of '{name}'"}
    metric = incumbent["metrics"].get("selection_metric", "NDCG")
    previous = ctx.store.get("evaluation", incumbent["evaluation_id"])["value"]
    comparison = f"holdout {metric} {ndcg:.4f} vs {previous:.4f} for production v{current}"
    if ndcg >= previous:
        set_production(ctx, registry, name, version)
        return {"promoted": True, "reason": comparison, "previous_version": current}
    return {"promoted": False, "reason": comparison, "production_version": current}
