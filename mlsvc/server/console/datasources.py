"""Console pages of datasources: the overview at /console, the list, live, and each datasource's schema and
insights, drawn from its statistics."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from mlsvc.datasources.schema import GARBAGE_TOLERANCE, TEXT_MIN_DISTINCT, TEXT_MIN_WORDS
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import DEFAULT_MISSING_VALUES, DataSource, Resource, Schema, Status
from mlsvc.server.console import charts
from mlsvc.server.console.pages import LIVE, PAGE_SIZE, Pager, error_page, render, service_of, signed_in_page
from mlsvc.service import ListQuery

router = APIRouter(prefix="/console", dependencies=[Depends(signed_in_page)])

COUNTED = (Status.PENDING, Status.INPROGRESS, Status.COMPLETED, Status.FAILED)
COUNT_CAP = 100  # the overview counts each status up to here ("100+"): a store of thousands stays fast
RECENT = 5
RULES = (
    f"BINARY when every value is a yes/no token (0/1, true/false, yes/no…) and both occur; NUMERIC when at most "
    f"{GARBAGE_TOLERANCE:.0%} of the values fail to parse as numbers, unless the name (id, zip, code…) or leading "
    f"zeros mark identifiers, or a few integer levels are codes; TEXT when values average at least "
    f"{TEXT_MIN_WORDS:g} words and at least {TEXT_MIN_DISTINCT:.0%} of them are distinct; CATEGORICAL otherwise."
)


# ------------------------------------------------------------------------------------------------- pages


@router.get("", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    """The overview: how many of each resource are in each state, and the newest of each."""
    service = service_of(request)
    kinds = [
        Kind("datasources", "Datasources", service.datasources, "/console/datasources", True),
        Kind("models", "Models", service.models, "/console/models"),
        Kind("evaluations", "Evaluations", service.evaluations, "/console/evaluations"),
        Kind("batch-predictions", "Batch predictions", service.batch_predictions, "/console/batch-predictions"),
    ]
    overview = [kind.overview() for kind in kinds]
    return render(
        request,
        "home.html",
        title="Overview",
        section="home",
        overview=overview,
        live=any(o.live for o in overview),
        item_link=item_link,
    )


@router.get("/datasources", response_class=HTMLResponse)
def datasources_page(
    request: Request,
    next_token: str | None = Query(None, max_length=512),
    status: str | None = Query(None, max_length=16),
    name_prefix: str | None = Query(None, max_length=256),
    limit: int = Query(PAGE_SIZE, ge=1, description="rows a page, at most PAGE_SIZE"),
) -> HTMLResponse:
    """Datasources, newest first, a page at a time, with their status, progress and row counts."""
    service = service_of(request)
    try:
        query = ListQuery(
            status=status_filter(status),
            name_prefix=name_prefix or None,
            limit=min(limit, PAGE_SIZE),
            next_token=next_token or None,
        )
        items, token = service.datasources.list(query)
    except MlsvcError as exc:
        return error_page(request, exc, "datasources")
    filters = {"status": query.status, "name_prefix": name_prefix, "limit": str(limit) if limit < PAGE_SIZE else None}
    return render(
        request,
        "datasources.html",
        title="Datasources",
        section="datasources",
        datasources=items,
        filters=filters,
        statuses=[s.value for s in Status],
        pager=Pager.of(request, filters, next_token, token),
        live=any(d.status in LIVE for d in items),
        percent=percent,
        num=num,
    )


@router.get("/datasources/{datasource_id}", response_class=HTMLResponse)
def datasource_page(request: Request, datasource_id: str) -> HTMLResponse:
    """One datasource: its progress while its job runs, then its schema, insights, invalid rows and rearrangement."""
    try:
        ds = service_of(request).datasources.get(datasource_id)
    except MlsvcError as exc:
        return error_page(request, exc, "datasources")
    view = DataSourceView.of(ds)
    return render(
        request,
        "datasources_detail.html",
        title=ds.name,
        section="datasources",
        ds=ds,
        view=view,
        rules=RULES,
        live=ds.status in LIVE,
        percent=percent,
        num=num,
        plural=plural,
    )


def status_filter(value: str | None) -> str | None:
    """A status of the list's filter ("" is any), or INVALID_REQUEST naming the statuses there are."""
    if not value:
        return None
    allowed = [s.value for s in Status]
    if value.upper() not in allowed:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"status {value!r} is not one of {allowed}", {"allowed": allowed})
    return value.upper()


def percent(fraction: float | None, digits: int = 0) -> str:
    return "—" if fraction is None else f"{fraction * 100:.{digits}f} %"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def num(value: Any, digits: int = 4) -> str:
    """A figure as a person reads it: an integer with separators, a float to ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}g}"


# ------------------------------------------------------------------------------------------------- overview


class Listing(Protocol):
    """What the overview needs of a collection of the service: its list call."""

    def list(self, query: ListQuery, /) -> tuple[Sequence[Resource], str | None]: ...


@dataclass(frozen=True)
class Count:
    status: str
    count: int
    more: bool  # COUNT_CAP reached: there are more
    link: str | None

    @property
    def shown(self) -> str:
        return f"{self.count}+" if self.more else str(self.count)


@dataclass(frozen=True)
class Overview:
    kind: str
    label: str
    link: str
    counts: list[Count]
    recent: list[Resource]

    @property
    def live(self) -> bool:
        return any(c.count for c in self.counts if c.status in {s.value for s in LIVE})


@dataclass(frozen=True)
class Kind:
    """One collection on the overview: its list call, its console list and whether that list filters by status."""

    kind: str
    label: str
    listing: Listing
    link: str
    status_links: bool = False

    def overview(self) -> Overview:
        counts = []
        for status in COUNTED:
            items, token = self.listing.list(ListQuery(status=status.value, limit=COUNT_CAP))
            link = f"{self.link}?status={status.value}" if self.status_links else None
            counts.append(Count(status.value, len(items), token is not None, link))
        recent, _ = self.listing.list(ListQuery(limit=RECENT))
        return Overview(self.kind, self.label, self.link, counts, list(recent))


def item_link(kind: str, resource: Resource) -> str:
    return f"/console/{kind}/{resource.id}"


# ------------------------------------------------------------------------------------------------- one datasource


@dataclass(frozen=True)
class Chart:
    """A chart of an attribute or of the target, with what it shows (``kind`` is the test's and a script's hook)."""

    kind: str
    svg: Markup
    caption: str


@dataclass(frozen=True)
class AttributeView:
    """One attribute: its type and role, the evidence for its type, its figures and its charts."""

    name: str
    kind: str
    role: str
    why: str
    stats: Mapping[str, Any]

    @property
    def anchor(self) -> str:
        return "attr-" + re.sub(r"[^A-Za-z0-9_-]", "_", self.name)

    @property
    def association(self) -> float | None:
        value = (self.stats.get("association") or {}).get("mutual_information_normalized")
        return value if isinstance(value, int | float) else None

    def figures(self) -> list[tuple[str, str]]:
        """The attribute's summary figures, by its type."""
        s = self.stats
        shown = [
            ("values", num(s.get("count"))),
            ("missing", num(s.get("missing"))),
            ("invalid", num(s.get("invalid"))),
        ]
        if self.kind == "NUMERIC":
            shown += [(k, num(s.get(k))) for k in ("min", "mean", "std", "max")]
            shown += [("median", num((s.get("quantiles") or {}).get("p50")))]
        elif self.kind == "CATEGORICAL":
            shown += [("distinct", ("≥ " if s.get("distinct_is_lower_bound") else "") + num(s.get("distinct")))]
        elif self.kind == "BINARY":
            shown += [("true", num(s.get("ones"))), ("false", num(s.get("zeros")))]
            shown += [("true fraction", percent(s.get("true_fraction"), 1))]
        elif self.kind == "TEXT":
            shown += [
                ("characters", f"{num(s.get('length_min'))} to {num(s.get('length_max'))}"),
                ("mean characters", num(s.get("length_mean"), 3)),
                ("words", f"{num(s.get('tokens_mean'), 3)} on average, {num(s.get('tokens_max'))} at most"),
                ("vocabulary", ("≥ " if s.get("vocabulary_is_lower_bound") else "") + num(s.get("vocabulary"))),
            ]
        return shown

    def charts(self) -> list[Chart]:
        """The charts of its type, from its statistics: none where the statistics do not have them."""
        s = self.stats
        if self.kind == "NUMERIC" and (hist := s.get("histogram")):
            return [histogram_chart(hist, f"Distribution of {self.name}", "histogram")]
        if self.kind == "CATEGORICAL" and s.get("distinct") == s.get("count"):
            return []  # a different value in every row: a chart of its top values would be a row of ones
        if self.kind == "CATEGORICAL" and (top := s.get("top_values")):
            labels, values = [str(t["value"]) for t in top], [t["count"] for t in top]
            caption = f"The {len(top)} most frequent of {num(s.get('distinct'))} values"
            return [Chart("top-values", bars(labels, values, f"Top values of {self.name}", True), caption)]
        if self.kind == "BINARY" and s.get("true_fraction") is not None:
            svg = bars(["true (1)", "false (0)"], [s.get("ones", 0), s.get("zeros", 0)], f"{self.name}", True)
            return [Chart("true-fraction", svg, f"True in {percent(s['true_fraction'], 1)} of the rows")]
        if self.kind == "TEXT" and (top := s.get("top_tokens")):
            labels, values = [str(t["token"]) for t in top], [t["count"] for t in top]
            caption = f"The {len(top)} most frequent words, by how often they occur"
            return [Chart("top-words", bars(labels, values, f"Top words of {self.name}", True), caption)]
        return []


def bars(labels: Sequence[str], values: Sequence[Any], title: str, horizontal: bool = False) -> Markup:
    return charts.bars(labels, [float(v or 0) for v in values], title=title, horizontal=horizontal)


EDGE_FORMAT = "{:,.4g}"  # a histogram's edges, as its bars' labels say them ("17.13 to 386.5")


def histogram_chart(hist: Mapping[str, Any], title: str, kind: str) -> Chart:
    edges, counts = list(hist.get("edges") or []), list(hist.get("counts") or [])
    svg = charts.histogram(edges, counts, title=title, edge_fmt=EDGE_FORMAT)
    caption = f"{len(counts)} bins from {num(edges[0])} to {num(edges[-1])}" if edges else ""
    return Chart(kind, svg, caption)


@dataclass(frozen=True)
class Ranked:
    """An attribute as the target's ranking places it."""

    attribute: str
    information: float | None  # the fraction of the target's entropy it explains, 0 to 1
    correlation: float | None
    note: str  # why it is not learnt from, where it is not


@dataclass(frozen=True)
class InvalidColumn:
    column: str
    count: int
    examples: list[Mapping[str, Any]]  # {file, line, value}


@dataclass
class DataSourceView:
    """What the datasource page shows, read from the datasource's schema and statistics."""

    attributes: list[AttributeView]
    statistics: Mapping[str, Any]
    target: Mapping[str, Any]
    ranking: list[Ranked]
    target_chart: Chart | None
    invalid_columns: list[InvalidColumn]
    wrong_field_count: int
    wrong_field_examples: list[str]
    missing_notes: list[str]
    rearrangement: str
    schema_origin: str

    @classmethod
    def of(cls, ds: DataSource) -> DataSourceView:
        stats = ds.statistics or {}
        target = stats.get("target") or {}
        invalid = stats.get("invalid_rows") or {}
        examples = invalid.get("examples") or {}
        by_column = examples.get("by_column") or {}
        attributes = attribute_views(ds, stats)
        roles = {a.name: a.role for a in attributes}
        return cls(
            attributes=attributes,
            statistics=stats,
            target=target,
            ranking=[ranked(r, roles.get(r.get("attribute", ""), "")) for r in target.get("ranking") or []],
            target_chart=target_chart(target),
            invalid_columns=[
                InvalidColumn(column, int(count), list(by_column.get(column) or []))
                for column, count in sorted((invalid.get("by_column") or {}).items(), key=lambda kv: -kv[1])
            ],
            wrong_field_count=int(invalid.get("wrong_field_count") or 0),
            wrong_field_examples=[str(e) for e in examples.get("wrong_field_count") or []],
            missing_notes=missing_notes(ds),
            rearrangement=rearrangement_text(ds),
            schema_origin=schema_origin(ds),
        )

    def ranking_chart(self) -> Markup:
        labels = [r.attribute for r in self.ranking]
        values = [r.information or 0.0 for r in self.ranking]
        return charts.bars(labels, values, title="Association with the target", horizontal=True, fmt="{:.3f}")


def attribute_views(ds: DataSource, stats: Mapping[str, Any]) -> list[AttributeView]:
    schema = ds.data_schema
    if schema is None:
        return []
    found = stats.get("attributes") or {}
    return [
        AttributeView(
            a.attributeName,
            a.attributeType.value,
            role_of(schema, a.attributeName),
            why_typed(ds, a.attributeName, a.attributeType.value, found.get(a.attributeName) or {}),
            found.get(a.attributeName) or {},
        )
        for a in schema.attributes
    ]


def role_of(schema: Schema, name: str) -> str:
    if name == schema.targetAttributeName:
        return "target"
    if name == schema.rowId:
        return "row id"
    if name == schema.rowWeight:
        return "row weight"
    if name in schema.excludedAttributeNames:
        return "excluded"
    return "feature"


def ranked(row: Mapping[str, Any], role: str) -> Ranked:
    notes = {"row id": "the row id: not learnt from", "excluded": "excluded: not learnt from"}
    information, correlation = row.get("mutual_information_normalized"), row.get("correlation")
    return Ranked(str(row.get("attribute")), information, correlation, notes.get(role, ""))


def target_chart(target: Mapping[str, Any]) -> Chart | None:
    """The target's distribution: its class counts, or the histogram of a NUMERIC target."""
    name = target.get("name", "")
    if counts := target.get("class_counts"):
        if target.get("type") == "BINARY":
            labels, values = ["true (1)", "false (0)"], [counts.get("1", 0), counts.get("0", 0)]
        else:
            labels, values = [str(k) for k in counts], list(counts.values())
        caption = f"{len(labels)} classes over {num(target.get('count'))} rows"
        return Chart("target", bars(labels, values, f"Distribution of {name}", True), caption)
    if hist := (target.get("summary") or {}).get("histogram"):
        return histogram_chart(hist, f"Distribution of {name}", "target")
    return None


def why_typed(ds: DataSource, name: str, kind: str, s: Mapping[str, Any]) -> str:
    """What the data shows for the attribute's type (the resource records no reasons, so: the evidence)."""
    if name in ds.attribute_types:
        return "set by the request's attribute_types"
    if not s:
        return ""
    count, invalid = int(s.get("count") or 0), int(s.get("invalid") or 0)
    if kind == "BINARY":
        bad = f"; {num(invalid)} invalid (neither yes nor no)" if invalid else ""
        return f"yes/no values only: {num(s.get('ones'))} true and {num(s.get('zeros'))} false{bad}"
    if kind == "NUMERIC":
        bad = f"; {num(invalid)} invalid (not a number)" if invalid else ""
        return f"numbers, from {num(s.get('min'))} to {num(s.get('max'))}{bad}"
    if kind == "TEXT":
        return (
            f"free text: {num(s.get('tokens_mean'), 3)} words a value on average, "
            f"{num(s.get('vocabulary'))} distinct words"
        )
    return categorical_evidence(s, count)


def categorical_evidence(s: Mapping[str, Any], count: int) -> str:
    top = [str(t.get("value")) for t in s.get("top_values") or []]
    distinct = int(s.get("distinct") or 0)
    if count == 0:
        return "no value present"
    if distinct == count and count > 1:
        return f"a different value in each of the {num(count)} rows: an identifier"
    examples = ", ".join(f"'{v}'" for v in top[:3])
    if top and all(v.isdigit() for v in top):
        if any(len(v) > 1 and v.startswith("0") for v in top):
            return f"digit codes with leading zeros ({examples}), which numbers do not carry: codes, not quantities"
        return f"numbers read as {num(distinct)} codes ({examples}), not quantities"
    return f"{num(distinct)} distinct labels ({examples})"


def schema_origin(ds: DataSource) -> str:
    """Where the types came from, as far as the datasource records it."""
    if ds.schema_uri:
        return f"The types are those of the schema file {ds.schema_uri}."
    return (
        "The types were inferred from a sample of the first rows, unless the request or a .schema file beside the "
        "data gave them; beside each is what the data shows for it."
    )


def missing_notes(ds: DataSource) -> list[str]:
    """Which tokens read as missing, and the columns that read otherwise (a default token kept as a value)."""
    if ds.missing_values is not None:
        tokens = ", ".join(f"'{t}'" for t in ds.missing_values) or "no token"
        notes = [f"Missing: blank cells, and the datasource's own tokens: {tokens}."]
        usual = set(ds.missing_values)
    else:
        notes = [f"Missing: blank cells, and the default tokens {', '.join(DEFAULT_MISSING_VALUES)}."]
        usual = set(DEFAULT_MISSING_VALUES)
    for a in ds.data_schema.attributes if ds.data_schema else []:
        own = set(a.missingValues) if a.missingValues is not None else usual
        if own == usual:
            continue
        if own < usual and ds.missing_values is None:  # a default token frequent in the column: a level of it
            kept = sorted(usual - own)
            values = ", ".join(f"'{t}'" for t in kept) + (" is a value" if len(kept) == 1 else " are values")
            notes.append(f"{a.attributeName}: {values} of this column (frequent in it), not missing.")
        else:
            tokens = ", ".join(f"'{t}'" for t in sorted(own)) or "no token"
            notes.append(f"{a.attributeName} reads blank cells and {tokens} as missing.")
    return notes


def rearrangement_text(ds: DataSource) -> str:
    split = ds.rearrangement.splitting if ds.rearrangement else None
    if split is None:
        return "Every row of the files (no rearrangement)."
    order = "in file order" if split.strategy == "sequential" else f"by a hash of each row (seed '{split.randomSeed}')"
    text = f"The rows from {split.percentBegin} % to {split.percentEnd} % of the data, {order}"
    if split.complement:
        text = f"Every row outside the range {split.percentBegin} % to {split.percentEnd} % of the data, {order}"
    return text + "."
