"""The console's create → train → predict flow: /console/new (a datasource from a URI, then a model trained on it,
each followed live) and /console/try/{ref} (a prediction form built from the model's schema, or a recommender's
box). The pages only read; every action is a call to the REST API from the page (static/flow.js)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mlsvc.errors import MlsvcError
from mlsvc.resources import AttributeType, DataSource, Model, ModelType, Status
from mlsvc.server.console.pages import error_page, here, or_none, render, service_of

router = APIRouter()  # included by ``batch.router``, under /console and its sign-in
RUNNING = (Status.PENDING, Status.INPROGRESS)
SUGGESTIONS = 20  # frequent users and items offered in a recommender's box
T = TypeVar("T")


@dataclass(frozen=True)
class FormField:
    """One input of the prediction form: an attribute, how it is typed in, and what it starts with."""

    name: str
    type: str  # the attribute's type, which says how the page sends the value (a number, a flag, text)
    control: str  # "number", "select", "binary" or "text"
    value: str = ""
    options: list[str] = field(default_factory=list)  # a select's levels, or a text input's suggestions
    hint: str = ""


@router.get("/new", response_class=HTMLResponse)
def new(
    request: Request,
    datasource: str | None = Query(None, max_length=64),
    model: str | None = Query(None, max_length=200),
) -> HTMLResponse:
    """The flow on one page, its state in the URL: the datasource form; once a datasource is named, its progress,
    then (COMPLETED) the training form; once a model is named, its progress, then (COMPLETED) a link to try it."""
    service = service_of(request)
    try:
        ds = service.datasources.get(datasource) if datasource else None
        ml = service.models.get(model) if model else None
    except MlsvcError as exc:
        return error_page(request, exc, "new")
    if ds is None and ml is not None:
        ds = _datasourceor_none(request, ml.datasource_id)
    return render(
        request,
        "new.html",
        title="Create, train, predict",
        section="new",
        ds=ds,
        ml=ml,
        live=any(r is not None and r.status in RUNNING for r in (ds, ml)),
        self_url=here(request),
        model_name=model_name_for(ds.name if ds else ""),
        columns=[a.attributeName for a in ds.data_schema.attributes] if ds and ds.data_schema else [],
        model_types=[t.value for t in ModelType],
    )


@router.get("/try/{ref}", response_class=HTMLResponse)
def try_model(request: Request, ref: str) -> HTMLResponse:
    """A form to predict one record, an input per attribute of the model; for a recommender, its holdout figures
    and the box that asks for a user's recommendations or an item's similar items."""
    service = service_of(request)
    try:
        model = service.models.get(ref)
    except MlsvcError as exc:
        return error_page(request, exc, "models")
    ds = _datasourceor_none(request, model.datasource_id)
    holdout = model.evaluation_id
    evaluation = or_none(lambda: service.evaluations.get(holdout)) if holdout else None
    summaries = _summaries(ds)
    roles = model.roles or {}
    return render(
        request,
        "try.html",
        title=f"Try {model.name} v{model.version}" if model.version else f"Try {model.name}",
        section="models",
        model=model,
        evaluation=evaluation,
        ref=ref,
        fields=form_fields(model, summaries),
        ready=model.status == Status.COMPLETED,
        suggest_users=_top_values(summaries.get(roles.get("user") or ""), SUGGESTIONS),
        suggest_items=_top_values(summaries.get(roles.get("item") or ""), SUGGESTIONS),
    )


def form_fields(model: Model, summaries: Mapping[str, Mapping[str, Any]]) -> list[FormField]:
    """The prediction form's inputs, in the model's feature order, typed from its schema and started at a typical
    value of the training data (its median, its most frequent level, its more frequent flag)."""
    return [_field(a.attributeName, a.attributeType, summaries.get(a.attributeName) or {}) for a in model.features]


def _field(name: str, kind: AttributeType, summary: Mapping[str, Any]) -> FormField:
    if kind == AttributeType.NUMERIC:
        quantiles = summary.get("quantiles") or {}
        median = quantiles.get("p50", summary.get("mean"))
        low, high = summary.get("min"), summary.get("max")
        hint = f"from {low:g} to {high:g} in the training data" if low is not None and high is not None else ""
        return FormField(name, kind.value, "number", _number(median), hint=hint)
    if kind == AttributeType.BINARY:
        fraction = summary.get("true_fraction")
        value = "" if fraction is None else ("true" if fraction >= 0.5 else "false")
        hint = f"true in {fraction:.0%} of the training rows" if fraction is not None else ""
        return FormField(name, kind.value, "binary", value, ["true", "false"], hint)
    levels = _top_values(summary, 1000)
    first = levels[0] if levels else ""
    if kind == AttributeType.CATEGORICAL and levels and _every_level_listed(summary, levels):
        return FormField(name, kind.value, "select", first, levels, f"{len(levels)} levels in the training data")
    hint = "the most frequent values are suggested" if levels else ""
    return FormField(name, kind.value, "text", first if kind == AttributeType.CATEGORICAL else "", levels, hint)


def _every_level_listed(summary: Mapping[str, Any], levels: list[str]) -> bool:
    """The statistics' top values are all the column's levels (not only its most frequent ones)."""
    return bool(summary.get("top_counts_exact")) and summary.get("distinct") == len(levels)


def _top_values(summary: Mapping[str, Any] | None, n: int) -> list[str]:
    return [str(v.get("value")) for v in (summary or {}).get("top_values") or []][:n]


def _number(value: object) -> str:
    """A number as an <input type=number> shows it: whole numbers without a decimal point."""
    if not isinstance(value, int | float):
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _summaries(ds: DataSource | None) -> dict[str, dict[str, Any]]:
    attributes: dict[str, dict[str, Any]] = ((ds.statistics if ds else None) or {}).get("attributes") or {}
    return attributes


def _datasourceor_none(request: Request, datasource_id: str) -> DataSource | None:
    """The model's datasource, if it is still there: the form works without its statistics, only plainer."""
    return or_none(lambda: service_of(request).datasources.get(datasource_id))


def model_name_for(datasource_name: str) -> str:
    """A model name suggested for a datasource's name: ``churn.csv`` → ``churn`` (the API's name pattern)."""
    stem = re.sub(r"(\.csv)?(\.gz)?$", "", datasource_name.rsplit("/", 1)[-1], flags=re.IGNORECASE)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:64]
    return slug or "model"
