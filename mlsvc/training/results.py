"""What a training job records, for every model type: the registered version, its metrics field, and the
held-out Evaluation (with the resource fields every Evaluation has)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from mlsvc.metadata.sql import utcnow
from mlsvc.registry import MODEL_ID_TAG, RegisteredVersion, VersionRecord
from mlsvc.registry.notes import completed_tags, description, registered_tags
from mlsvc.training.evaluation import summary_metrics

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext
    from mlsvc.planes import Planes


class SearchOutcome(Protocol):
    """What a train / validate / select loop reports, whatever it trains."""

    metric: str
    validation_score: float
    selected: str
    search_s: float
    refit_s: float


@dataclass(frozen=True)
class Shown:
    """What a version holds besides its fitted model, and its run besides parameters and metrics: ``scoring``, what
    the scorer reads of the model (MLflow's pyfunc of the version scores with it, as the API does); ``evaluation``,
    the holdout evaluation's insights (drawn as figures); ``documents``, JSON documents by name (schema, recipe…)."""

    scoring: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    documents: Mapping[str, Any]


def register(
    ctx: JobContext,
    model: Mapping[str, Any],
    fitted: Any,
    example: pd.DataFrame,
    params: Mapping[str, Any],
    figures: Mapping[str, float],
    outcome: SearchOutcome,
    leaderboard: list[dict[str, Any]],
    shown: Shown,
) -> RegisteredVersion:
    """Log the fitted model as the next version of the model's name, with its parameters and holdout figures, and
    what ``shown`` adds."""
    ctx.progress(0.9, message="registering the model in MLflow")
    # An earlier attempt of this job (its worker died) may have registered a version already: one model, one version.
    ctx.registry.discard_versions(model["name"], model["id"])
    identity = {"model_id": model["id"], "datasource_id": model["datasource_id"]}
    record = VersionRecord(
        card={"id": model["id"], "name": model["name"], **shown.scoring},
        example=example,
        params={**identity, **params, "selected": outcome.selected},
        metrics={**figures, "validation_score": outcome.validation_score},
        leaderboard=leaderboard,
        tags={MODEL_ID_TAG: model["id"]},
        version_tags=registered_tags(model),
        evaluation=shown.evaluation,
        documents=shown.documents,
        version=model.get("version"),
    )
    return ctx.registry.log_model(model["name"], fitted, record)


def annotate(
    ctx: JobContext, model: Mapping[str, Any], fields: Mapping[str, Any], evaluation: Mapping[str, Any]
) -> None:
    """Once the job's result is recorded, tag its MLflow version with what mlsvc says of it (status, holdout
    metric, promotion) and describe it; best effort, as the aliases are mirrored."""
    registry, name, version = ctx.registry, model["name"], int(fields["version"])
    tags, text = completed_tags(model, fields, evaluation), description(model, fields, evaluation)
    ctx.after_complete.append(lambda: registry.annotate(name, version, tags, text))


def discard(planes: Planes, model: Mapping[str, Any]) -> None:
    """Remove what a training job that ended without its result (failed, cancelled by a delete, or given up after
    its worker died) published: the MLflow version and runs logged for the model, and its holdout evaluation."""
    planes.registry.discard_versions(model["name"], model["id"])
    holdout = planes.metadata.find("evaluation", holdout_id(model["id"]))
    if holdout is not None and holdout["status"] != "DELETED":
        planes.metadata.update("evaluation", holdout["id"], {"status": "DELETED"})


def holdout_id(model_id: str) -> str:
    return f"ev-{model_id}-holdout"


def model_metrics(outcome: SearchOutcome, figures: Mapping[str, float]) -> dict[str, Any]:
    """A model's ``metrics`` field: the selection metric and validation score, the holdout figures, the timings."""
    return {
        "selection_metric": outcome.metric,
        "validation_score": outcome.validation_score,
        **figures,
        "search_s": round(outcome.search_s, 3),
        "refit_s": round(outcome.refit_s, 3),
        "selected": outcome.selected,
    }


def record_evaluation(
    ctx: JobContext,
    model: Mapping[str, Any],
    version: int,
    insights: dict[str, Any],
    figures: dict[str, float],
) -> str:
    """The evaluation on the held-out rows, stored as a COMPLETED Evaluation resource of its own."""
    evaluation_id = holdout_id(model["id"])
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
        "datasource_id": model["datasource_id"],
        "holdout": True,
        **evaluation_fields(insights, figures),
    }
    # The job may run again after a lost worker: the same id and request make the second write a no-op.
    ctx.metadata.create("evaluation", record, f"holdout:{model['id']}", {}, None)
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
