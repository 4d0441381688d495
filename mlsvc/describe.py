"""Human-readable tables of a datasource's schema and statistics, for the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlsvc.resources import DataSource


def describe_datasource(console: Console, ds: DataSource) -> None:
    console.print(f"[bold]{ds.id}[/bold] {ds.name}  {ds.status.value}  {ds.data_uri}")
    if ds.message:
        console.print(ds.message)
    if ds.row_count is not None:
        console.print(f"rows: {ds.row_count} in the files, {ds.used_row_count} used, "
                      f"{ds.invalid_row_count} invalid")
    if ds.data_schema is None:
        return
    schema = ds.data_schema
    stats = (ds.statistics or {}).get("attributes", {})
    table = Table("attribute", "type", "role", "missing", "invalid", "summary", "assoc. with target",
                  title="schema and statistics")
    for attribute in schema.attributes:
        name = attribute.attributeName
        role = _role(name, schema.targetAttributeName, schema.rowId, schema.excludedAttributeNames)
        s: dict[str, Any] = stats.get(name, {})
        table.add_row(name, attribute.attributeType.value, role, _num(s.get("missing")), _num(s.get("invalid")),
                      _summary(s), _association(s))
    console.print(table)


def _role(name: str, target: str | None, row_id: str | None, excluded: list[str]) -> str:
    if name == target:
        return "target"
    if name == row_id:
        return "row id"
    return "excluded" if name in excluded else ""


def _num(value: Any) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _summary(s: dict[str, Any]) -> str:
    if "mean" in s:
        return f"min {_num(s.get('min'))} · mean {_num(s.get('mean'))} · max {_num(s.get('max'))}"
    top = s.get("top_values")
    if top:
        shown = ", ".join(f"{t.get('value')} ({t.get('count')})" for t in top[:3])
        return f"{s.get('distinct', '?')} distinct: {shown}"
    if "true_fraction" in s:
        return f"true {_num(s.get('true_fraction'))}"
    if "length_mean" in s:
        return f"mean length {_num(s.get('length_mean'))}"
    return ""


def _association(s: dict[str, Any]) -> str:
    assoc = s.get("association")
    if not isinstance(assoc, dict):
        return ""
    for key in ("correlation", "mutual_information_normalized", "mutual_information"):
        if assoc.get(key) is not None:
            return f"{key.split('_')[0]} {_num(assoc[key])}"
    return ""
