"""Tables of a datasource's schema and statistics."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlsvc.resources import DEFAULT_MISSING_VALUES, DataSource, Schema


def describe_datasource(console: Console, ds: DataSource) -> None:
    """The datasource's counts, then its attributes (type, role, missing, invalid, association with the target),
    then one table per attribute type with what matters for it, the target's distribution and invalid rows.

    Reads the shape ``mlsvc.datasources.statistics.StatisticsAccumulator.result`` produces (plus the job's
    ``invalid_rows`` section).
    """
    console.print(f"[bold]{ds.id}[/bold] {ds.name}  {ds.status.value}  {ds.data_uri}")
    if ds.message:
        console.print(ds.message)
    if ds.row_count is not None:
        console.print(
            f"rows: {_int(ds.row_count)} in the files, {_int(ds.used_row_count)} used, "
            f"{_int(ds.invalid_row_count)} invalid"
        )
    if len(ds.files) > 1:
        console.print(f"files: {len(ds.files)} ({ds.files[0]} … {ds.files[-1]})")
    if ds.data_schema is None:
        return
    schema = ds.data_schema
    note = _missing_values_note(ds.missing_values, schema)
    if note:
        console.print(note)
    statistics = ds.statistics or {}
    stats: dict[str, dict[str, Any]] = statistics.get("attributes", {})
    if statistics.get("approximate"):
        console.print(
            f"quantiles, histograms and associations from a uniform sample of "
            f"{_int(statistics.get('sample_rows'))} rows"
        )
    console.print(_attributes_table(schema, stats))
    for table in (
        _numeric_table(schema, stats),
        _categorical_table(schema, stats),
        _binary_table(schema, stats),
        _text_table(schema, stats),
        _target_table(statistics.get("target")),
        _invalid_table(statistics.get("invalid_rows")),
    ):
        if table is not None:
            console.print(table)


def _missing_values_note(wide: list[str] | None, schema: Schema) -> str | None:
    """Which tokens read as missing, when not only the defaults: the datasource's ``missing_values``, and each column
    that reads otherwise (a default kept as a frequent level, or its schema's own ``missingValues``)."""
    base = _lowered(wide if wide is not None else DEFAULT_MISSING_VALUES)
    columns = []
    for attribute in schema.attributes:
        if attribute.missingValues is None:
            continue
        own = _lowered(attribute.missingValues)
        kept, added = sorted(base - own), sorted(own - base)
        parts = [f"{_quoted(kept)} as {'a level' if len(kept) == 1 else 'levels'}"] if kept else []
        parts += [f"{_quoted(added)} as missing"] if added else []
        if parts:
            columns.append(f"{attribute.attributeName} reads " + " and ".join(parts))
    if wide is None and not columns:
        return None
    head = "the defaults" if wide is None else (_quoted(wide) or "no tokens")
    return f"missing values: {head} and blank cells" + "".join(f"; {c}" for c in columns)


def _lowered(tokens: list[str] | tuple[str, ...]) -> set[str]:
    return {t.strip().lower() for t in tokens} - {""}


def _quoted(tokens: list[str]) -> str:
    return ", ".join(repr(t) for t in tokens)


def _attributes_table(schema: Schema, stats: dict[str, dict[str, Any]]) -> Table:
    has_target = schema.targetAttributeName is not None
    columns = ["attribute", "type", "role", "missing", "invalid"]
    if has_target:
        columns.append(f"association with {schema.targetAttributeName}")
    table = Table(*columns, title="schema")
    for attribute in schema.attributes:
        name = attribute.attributeName
        s = stats.get(name, {})
        row = [name, attribute.attributeType.value, _role(name, schema), _int(s.get("missing")), _int(s.get("invalid"))]
        if has_target:
            row.append(_association(s.get("association")))
        table.add_row(*row)
    return table


def _of_type(schema: Schema, stats: dict[str, dict[str, Any]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (a.attributeName, stats[a.attributeName])
        for a in schema.attributes
        if a.attributeType.value == kind and a.attributeName in stats
    ]


def _numeric_table(schema: Schema, stats: dict[str, dict[str, Any]]) -> Table | None:
    rows = _of_type(schema, stats, "NUMERIC")
    if not rows:
        return None
    table = Table("attribute", "min", "p25", "median", "mean", "std", "p75", "max", title="numeric attributes")
    for name, s in rows:
        quantiles = s.get("quantiles") or {}
        table.add_row(
            name,
            _num(s.get("min")),
            _num(quantiles.get("p25")),
            _num(quantiles.get("p50")),
            _num(s.get("mean")),
            _num(s.get("std")),
            _num(quantiles.get("p75")),
            _num(s.get("max")),
        )
    return table


def _categorical_table(schema: Schema, stats: dict[str, dict[str, Any]]) -> Table | None:
    rows = _of_type(schema, stats, "CATEGORICAL")
    if not rows:
        return None
    table = Table("attribute", "distinct", "top values (count)", title="categorical attributes")
    for name, s in rows:
        distinct = _int(s.get("distinct")) + ("+" if s.get("distinct_is_lower_bound") else "")
        present = (s.get("count") or 0) - (s.get("missing") or 0) - (s.get("invalid") or 0)
        unique = s.get("distinct") == present and present > 1 and not s.get("distinct_is_lower_bound")
        table.add_row(
            name, distinct, "(a different value in every row)" if unique else _top(s.get("top_values"), "value")
        )
    return table


def _binary_table(schema: Schema, stats: dict[str, dict[str, Any]]) -> Table | None:
    rows = _of_type(schema, stats, "BINARY")
    if not rows:
        return None
    table = Table("attribute", "true (1)", "false (0)", "true fraction", title="binary attributes")
    for name, s in rows:
        table.add_row(name, _int(s.get("ones")), _int(s.get("zeros")), _percent(s.get("true_fraction")))
    return table


def _text_table(schema: Schema, stats: dict[str, dict[str, Any]]) -> Table | None:
    rows = _of_type(schema, stats, "TEXT")
    if not rows:
        return None
    table = Table(
        "attribute",
        "length min / mean / max",
        "words mean / max",
        "vocabulary",
        "top words (count)",
        title="text attributes",
    )
    for name, s in rows:
        length = f"{_num(s.get('length_min'))} / {_num(s.get('length_mean'))} / {_num(s.get('length_max'))}"
        words = f"{_num(s.get('tokens_mean'))} / {_num(s.get('tokens_max'))}"
        vocabulary = _int(s.get("vocabulary")) + ("+" if s.get("vocabulary_is_lower_bound") else "")
        table.add_row(name, length, words, vocabulary, _top(s.get("top_tokens"), "token"))
    return table


def _target_table(target: dict[str, Any] | None) -> Table | None:
    if not target:
        return None
    table = Table("", "", title=f"target {target.get('name')} ({target.get('type')})", show_header=False)
    counts = target.get("class_counts")
    if counts:
        total = sum(counts.values()) or 1
        for label, count in counts.items():
            table.add_row(f"class {label}", f"{_int(count)} ({count / total:.1%})")
    summary = target.get("summary")
    if summary:
        for key in ("min", "mean", "std", "max"):
            table.add_row(key, _num(summary.get(key)))
    table.add_row("missing", _int(target.get("missing")))
    ranking = [r for r in target.get("ranking", []) if r.get("mutual_information_normalized") is not None]
    if ranking:
        best = ", ".join(f"{r['attribute']} {_num(r['mutual_information_normalized'])}" for r in ranking[:5])
        table.add_row("most informative", best)
    return table


def _invalid_table(invalid: dict[str, Any] | None) -> Table | None:
    if not invalid or not invalid.get("total"):
        return None
    table = Table("where", "rows", "examples", title=f"invalid rows: {_int(invalid.get('total'))} (skipped)")
    examples = invalid.get("examples") or {}
    by_column_examples = examples.get("by_column") or {}
    for column, count in sorted((invalid.get("by_column") or {}).items(), key=lambda kv: -kv[1]):
        shown = ", ".join(_example(e) for e in by_column_examples.get(column, [])[:3])
        table.add_row(f"column {column}", _int(count), shown)
    if invalid.get("wrong_field_count"):
        table.add_row(
            "wrong number of fields",
            _int(invalid["wrong_field_count"]),
            "; ".join((examples.get("wrong_field_count") or [])[:3]),
        )
    return table


def _example(example: Any) -> str:
    if isinstance(example, dict):
        return f"line {example.get('line')} {example.get('value', '')!r}"
    return f"line {example}"


def _role(name: str, schema: Schema) -> str:
    if name == schema.targetAttributeName:
        return "target"
    if name == schema.rowId:
        return "row id"
    return "excluded" if name in schema.excludedAttributeNames else ""


def _association(assoc: Any) -> str:
    if not isinstance(assoc, dict):
        return ""
    parts = []
    if assoc.get("correlation") is not None:
        parts.append(f"r {assoc['correlation']:+.3f}")
    if assoc.get("mutual_information_normalized") is not None:
        parts.append(f"MI {assoc['mutual_information_normalized']:.3f}")
    return " · ".join(parts)


def _top(values: Any, key: str, shown: int = 5) -> str:
    if not values:
        return ""
    return ", ".join(f"{v.get(key)} ({_int(v.get('count'))})" for v in values[:shown])


def _int(value: Any) -> str:
    return "" if value is None else f"{value:,}"


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _percent(value: Any) -> str:
    return "" if value is None else f"{value:.1%}"
