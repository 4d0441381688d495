"""Console pages of models and evaluations: versions by name with their aliases, a version's leaderboard and
holdout evaluation, any evaluation's views, and the threshold slider of a BINARY model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from mlsvc.errors import MlsvcError
from mlsvc.resources import Evaluation, Model, Status
from mlsvc.server.console.pages import (
    LIVE,
    PAGE_SIZE,
    Pager,
    error_page,
    or_none,
    render,
    service_of,
    signed_in_page,
)
from mlsvc.service import ListQuery

router = APIRouter(prefix="/console", dependencies=[Depends(signed_in_page)])

METRIC_NAMES = {"BinaryAUC": "AUC", "MulticlassAvgFScore": "macro F1", "RegressionRMSE": "RMSE"}
IMPORTANCES_SHOWN = 25


# ------------------------------------------------------------------------------------------------- pages


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    next_token: str | None = Query(None, max_length=512),
    name: str | None = Query(None, max_length=64),
    name_prefix: str | None = Query(None, max_length=256),
) -> HTMLResponse:
    """Model versions, newest first, grouped by name (one page of the store at a time)."""
    service = service_of(request)
    query = ListQuery(name_prefix=name_prefix or None, limit=PAGE_SIZE, next_token=next_token or None)
    try:
        versions, token = service.models.list(query, name or None)
    except MlsvcError as exc:
        return error_page(request, exc, "models")
    filters = {"name": name, "name_prefix": name_prefix}
    return render(
        request,
        "models.html",
        title="Models",
        section="models",
        groups=group_by_name(versions),
        filters=filters,
        pager=Pager.of(request, filters, next_token, token),
        live=any(v.status in LIVE for v in versions),
        num=num,
        headline=headline,
    )


@router.get("/models/{ref}", response_class=HTMLResponse)
def model_page(request: Request, ref: str) -> HTMLResponse:
    """One version: its progress while it trains, then its leaderboard, holdout evaluation and aliases."""
    service = service_of(request)
    try:
        model = service.models.get(ref)
        siblings, _ = service.models.list(ListQuery(limit=PAGE_SIZE), model.name)
    except MlsvcError as exc:
        return error_page(request, exc, "models")
    evaluation_id = model.evaluation_id
    evaluation = or_none(lambda: service.evaluations.get(evaluation_id)) if evaluation_id else None
    name_aliases = sorted((alias, v.version) for v in siblings for alias in v.aliases)
    return render(
        request,
        "models_version.html",
        title=f"{model.name} v{model.version}" if model.version else model.name,
        section="models",
        model=model,
        evaluation=evaluation,
        view=EvaluationView.of(evaluation, model) if evaluation else None,
        siblings=siblings,
        name_aliases=name_aliases,
        importances=model.importances[:IMPORTANCES_SHOWN],
        # Candidates the budget left out have no score: listed apart, so that the ranking stays readable.
        ranked=[row for row in model.leaderboard if row.get("validation_score") is not None],
        skipped=[row for row in model.leaderboard if row.get("validation_score") is None],
        live=model.status in LIVE,
        num=num,
        headline=headline,
    )


@router.get("/evaluations", response_class=HTMLResponse)
def evaluations_page(
    request: Request,
    next_token: str | None = Query(None, max_length=512),
    model_id: str | None = Query(None, max_length=64),
    name_prefix: str | None = Query(None, max_length=256),
) -> HTMLResponse:
    """Evaluations, newest first, optionally of one model version."""
    service = service_of(request)
    query = ListQuery(name_prefix=name_prefix or None, limit=PAGE_SIZE, next_token=next_token or None)
    try:
        evaluations, token = service.evaluations.list(query, model_id or None)
    except MlsvcError as exc:
        return error_page(request, exc, "evaluations")
    filters = {"model_id": model_id, "name_prefix": name_prefix}
    return render(
        request,
        "evaluations.html",
        title="Evaluations",
        section="evaluations",
        evaluations=evaluations,
        filters=filters,
        pager=Pager.of(request, filters, next_token, token),
        live=any(e.status in LIVE for e in evaluations),
        num=num,
        metric_name=metric_name,
    )


@router.get("/evaluations/{evaluation_id}", response_class=HTMLResponse)
def evaluation_page(request: Request, evaluation_id: str) -> HTMLResponse:
    """One evaluation: its metrics against the baseline and the views of its model type."""
    service = service_of(request)
    try:
        evaluation = service.evaluations.get(evaluation_id)
    except MlsvcError as exc:
        return error_page(request, exc, "evaluations")
    model = or_none(lambda: service.models.get(evaluation.model_id))
    return render(
        request,
        "evaluation.html",
        title=evaluation.name,
        section="evaluations",
        evaluation=evaluation,
        model=model,
        view=EvaluationView.of(evaluation, model),
        live=evaluation.status in LIVE,
        num=num,
    )


# ------------------------------------------------------------------------------------------------- lists


@dataclass
class NameGroup:
    """The versions of one name on a page, and the aliases they carry (alias → version)."""

    name: str
    versions: list[Model] = field(default_factory=list)
    aliases: list[tuple[str, int | None]] = field(default_factory=list)


def group_by_name(versions: Sequence[Model]) -> list[NameGroup]:
    """Versions grouped by name, the names in the order their newest version appears."""
    groups: dict[str, NameGroup] = {}
    for version in versions:
        group = groups.setdefault(version.name, NameGroup(version.name))
        group.versions.append(version)
        group.aliases.extend((alias, version.version) for alias in version.aliases)
    for group in groups.values():
        group.aliases.sort()
    return list(groups.values())


def metric_name(metric: str | None) -> str:
    return METRIC_NAMES.get(metric or "", metric or "")


def headline(model: Model) -> tuple[str, float | None]:
    """A version's selection metric on its held-out rows (the validation score before the holdout is scored)."""
    metric = model.metrics.get("selection_metric")
    if not metric:
        return "", None
    value = model.metrics.get(metric, model.metrics.get("validation_score"))
    return metric_name(metric), value if isinstance(value, int | float) else None


def num(value: Any, digits: int = 4) -> str:
    """A figure as a person reads it: a float to ``digits`` significant digits, an undefined one as "—"."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.{digits}g}"


# ------------------------------------------------------------------------------------------------- evaluations


@dataclass(frozen=True)
class Comparison:
    """One figure of the model beside the baseline's; ``higher_is_better`` None where it has no direction."""

    name: str
    value: float | None
    baseline: float | None
    higher_is_better: bool | None = None

    @property
    def verdict(self) -> str:
        if self.value is None or self.baseline is None or self.higher_is_better is None:
            return ""
        if self.value == self.baseline:
            return "same"
        return "better" if (self.value > self.baseline) == self.higher_is_better else "worse"


@dataclass
class EvaluationView:
    """What the evaluation templates draw, read from an evaluation's insights: the comparison with the baseline,
    and the figures of its model type."""

    evaluation: Evaluation
    kind: str
    insights: dict[str, Any]
    comparisons: list[Comparison]
    notes: list[str]
    save_model: Model | None = None  # a COMPLETED BINARY model whose score_threshold the slider may set
    threshold: float = 0.5

    @classmethod
    def of(cls, evaluation: Evaluation, model: Model | None) -> EvaluationView:
        insights = evaluation.insights or {}
        kind = evaluation.model_type.value if evaluation.model_type else str(insights.get("model_type", ""))
        savable = (
            model is not None and model.status == Status.COMPLETED and model.model_type is not None
        ) and model.model_type.value == "BINARY"
        at = (insights.get("at_threshold") or {}).get("threshold")
        threshold = model.score_threshold if savable and model and model.score_threshold is not None else at
        return cls(
            evaluation=evaluation,
            kind=kind,
            insights=insights,
            comparisons=comparisons(kind, insights, evaluation.metrics),
            notes=[str(n) for n in insights.get("notes") or []],
            save_model=model if savable else None,
            threshold=round(float(threshold if threshold is not None else 0.5), 2),
        )

    # --- BINARY

    def roc(self) -> list[tuple[float, float]]:
        return [(p["fpr"], p["tpr"]) for p in self.insights.get("roc_curve") or []]

    def precision_recall(self) -> list[tuple[float, float]]:
        return [(p["recall"], p["precision"]) for p in self.insights.get("pr_curve") or []]

    def score_histogram(self) -> dict[str, Any]:
        return dict(self.insights.get("score_histogram") or {})

    def threshold_rows(self) -> list[dict[str, Any]]:
        """The evaluation's table at thresholds 0.00 … 1.00, with the confusion counts each row implies."""
        positives, negatives = self.insights.get("positives") or 0, self.insights.get("negatives") or 0
        return [with_counts(row, positives, negatives) for row in self.insights.get("thresholds") or []]

    def threshold_json(self) -> Markup:
        """The table as JSON safe inside a <script> element (no "</" can end it early)."""
        return Markup(json.dumps(self.threshold_rows(), separators=(",", ":")).replace("</", "<\\/"))

    def row_at(self, threshold: float) -> dict[str, Any] | None:
        rows = self.threshold_rows()
        index = round(threshold * 100)
        return rows[index] if 0 <= index < len(rows) else None

    # --- MULTICLASS

    def confusion(self) -> tuple[list[str], list[list[int]], int]:
        """The class labels, the matrix (rows the true class, columns the predicted one) and its largest cell."""
        found = self.insights.get("confusion_matrix") or {}
        labels, matrix = list(found.get("labels") or []), list(found.get("matrix") or [])
        return labels, matrix, max((max(row) for row in matrix if row), default=0)

    def per_class(self) -> list[tuple[str, dict[str, Any]]]:
        return list((self.insights.get("per_class") or {}).items())

    # --- REGRESSION

    def residual_histogram(self) -> dict[str, Any]:
        return dict(self.insights.get("residual_histogram") or {})

    def predicted_vs_actual(self) -> list[tuple[float, float]]:
        """(actual, predicted) of the rows an evaluation kept, where it keeps them."""
        return [(p["actual"], p["predicted"]) for p in self.insights.get("predicted_vs_actual") or []]


def with_counts(row: Mapping[str, Any], positives: int, negatives: int) -> dict[str, Any]:
    """A threshold row with its confusion counts, recovered exactly from its rates: tp = recall × positives and
    fp = false-positive rate × negatives (each rate is a ratio of whole counts, so rounding undoes the division);
    a rate is undefined only when its class is absent, and then its counts are 0."""
    tp = round((row.get("recall") or 0.0) * positives)
    fp = round((row.get("false_positive_rate") or 0.0) * negatives)
    return {**row, "tp": tp, "fp": fp, "fn": positives - tp, "tn": negatives - fp}


def comparisons(kind: str, insights: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Comparison]:
    """The model's headline figures beside the baseline's."""
    baseline = insights.get("baseline") or {}
    if kind == "BINARY":
        return [
            Comparison("AUC", insights.get("auc"), baseline.get("value"), True),
            Comparison("average precision", insights.get("average_precision"), baseline.get("average_precision"), True),
        ]
    if kind == "MULTICLASS":
        return [
            Comparison("macro F1", insights.get("macro_f1"), baseline.get("value"), True),
            Comparison("accuracy", insights.get("accuracy"), baseline.get("accuracy"), True),
        ]
    if kind == "REGRESSION":
        r2 = insights.get("r2")
        return [
            Comparison("RMSE", insights.get("rmse"), baseline.get("value"), False),
            Comparison("MAE", insights.get("mae"), baseline.get("mae"), False),
            # Predicting the mean explains nothing: its R² is 0 by definition (undefined for a constant target).
            Comparison("R²", r2, 0.0 if r2 is not None else None, True),
        ]
    # Other types (RECOMMENDATION): each figure with the baseline's figure of the same name, where there is one.
    return [
        Comparison(name, value, _number(metrics.get(f"baseline_{name}")))
        for name, value in metrics.items()
        if not name.startswith("baseline_") and isinstance(value, int | float) and not isinstance(value, bool)
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
