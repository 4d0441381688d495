"""The datasource job: find the files, settle the schema, and take one streaming pass for counts and statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsvc.datasources.reader import header_names, open_with_head, peek_rows
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.datasources.scan import ScanCounts, count_rows, require_columns, scan
from mlsvc.datasources.schema import apply_overrides, detect_header, infer_schema, schema_from_json
from mlsvc.datasources.statistics import StatisticsAccumulator
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Rearrangement, Schema
from mlsvc.storage import ObjectInfo, Storage

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext

SCHEMA_FILE_LIMIT = 1024 * 1024
INFERENCE_SAMPLE_ROWS = 20_000


@dataclass
class Layout:
    """The files of a datasource and the column names of each."""

    files: list[ObjectInfo]
    names_by_file: dict[str, list[str]]


def run(ctx: JobContext) -> Mapping[str, Any]:
    ds = ctx.resource
    storage = ctx.storage
    files = storage.list_data_files(ds["data_uri"])
    ctx.progress(0.02, files=[f.uri for f in files])
    schema = settle_schema(storage, ds, files)
    layout = read_layout(storage, files, schema)
    splitting = Rearrangement.model_validate(ds["rearrangement"]).splitting if ds.get("rearrangement") else None
    limit = ctx.settings.max_record_bytes
    total = count_rows(storage, files, layout.names_by_file, schema, limit) if needs_row_count(splitting) else None
    counts = ScanCounts()
    stats = StatisticsAccumulator(schema) if ds.get("compute_statistics", True) else None
    for chunk in scan(storage, files, layout.names_by_file, schema, splitting, total, counts,
                      on_progress=lambda f: ctx.progress(0.05 + 0.9 * f), max_record_bytes=limit):
        if stats is not None:
            stats.update(chunk.typed, chunk.invalid)
    _check_counts(counts, ds, schema)
    return {
        "schema": schema.model_dump(mode="json"),
        "target": schema.targetAttributeName,
        "row_id": schema.rowId,
        "files": [f.uri for f in files],
        "row_count": counts.total_rows + counts.bad_rows.count,
        "used_row_count": counts.used_rows,
        "invalid_row_count": counts.all_invalid,
        "statistics": _statistics(stats, counts),
    }


def _statistics(stats: StatisticsAccumulator | None, counts: ScanCounts) -> dict[str, Any] | None:
    if stats is None:
        return None
    result = stats.result()
    result["invalid_rows"] = {
        "total": counts.all_invalid,
        "wrong_field_count": counts.bad_rows.count,
        "by_column": dict(counts.invalid_by_column),
        "examples": {"by_column": counts.invalid_examples, "wrong_field_count": counts.bad_rows.examples},
    }
    return result


def _check_counts(counts: ScanCounts, ds: Mapping[str, Any], schema: Schema) -> None:
    seen = counts.total_rows + counts.bad_rows.count
    if seen == 0:
        raise MlsvcError(ErrorCode.INVALID_DATA,
                         f"{ds['data_uri']} has no data rows" + (" (only a header)" if schema.dataFileContainsHeader
                                                                 else ""))
    limit = float(ds.get("max_invalid_fraction", 0.1))
    if counts.all_invalid / seen > limit:
        raise MlsvcError(ErrorCode.INVALID_DATA, counts.invalid_message(limit))
    if counts.used_rows == 0:
        raise MlsvcError(ErrorCode.INVALID_DATA,
                         "the rearrangement keeps no rows of the data; widen percentBegin..percentEnd")


def settle_schema(storage: Storage, ds: Mapping[str, Any], files: list[ObjectInfo]) -> Schema:
    """The caller's schema, else a schema file, else one inferred from a sample; then the caller's overrides."""
    schema = _given_schema(storage, ds, files)
    if schema is None:
        schema = _infer(storage, files[0], ds.get("target"), ds.get("row_id"))
    return apply_overrides(schema, target=ds.get("target"), row_id=ds.get("row_id"),
                           overrides=ds.get("attribute_types") or None)


def _given_schema(storage: Storage, ds: Mapping[str, Any], files: list[ObjectInfo]) -> Schema | None:
    if ds.get("schema"):
        return Schema.model_validate(ds["schema"])
    if ds.get("schema_uri"):
        return schema_from_json(storage.read_bytes(ds["schema_uri"], SCHEMA_FILE_LIMIT).decode("utf-8", "replace"))
    for candidate in _schema_candidates(ds["data_uri"], files):
        if storage.exists(candidate):
            return schema_from_json(storage.read_bytes(candidate, SCHEMA_FILE_LIMIT).decode("utf-8", "replace"))
    return None


def _schema_candidates(data_uri: str, files: list[ObjectInfo]) -> list[str]:
    base = data_uri.rstrip("/")
    candidates = [base + ".schema"]
    if len(files) > 1 or files[0].uri != data_uri:
        candidates.append(base + "/.schema")
    return candidates


def _infer(storage: Storage, first: ObjectInfo, target: str | None, row_id: str | None) -> Schema:
    with storage.open_read(first.uri) as stream:
        head, _ = open_with_head(stream)
    rows = peek_rows(head, limit=INFERENCE_SAMPLE_ROWS)
    if not rows:
        raise MlsvcError(ErrorCode.INVALID_DATA, f"{first.uri} is empty")
    has_header = detect_header(rows)
    names = header_names(rows[0]) if has_header else [f"col_{i}" for i in range(1, len(rows[0]) + 1)]
    body = rows[1:] if has_header else rows
    if not body:
        raise MlsvcError(ErrorCode.INVALID_DATA, f"{first.uri} has a header but no data rows")
    width = len(names)
    sample = pd.DataFrame([(r + [""] * width)[:width] for r in body], columns=names, dtype=object)
    for role, name in (("target", target), ("row_id", row_id)):
        if name is not None and name not in names:
            raise MlsvcError(ErrorCode.INVALID_DATA, f"{role} column '{name}' not found; columns are {names}")
    return infer_schema(sample, has_header=has_header, target=target, row_id=row_id)


def read_layout(storage: Storage, files: list[ObjectInfo], schema: Schema) -> Layout:
    """Each file's column names (its header, or the schema's order), checked against the schema."""
    names_by_file: dict[str, list[str]] = {}
    for info in files:
        if schema.dataFileContainsHeader:
            with storage.open_read(info.uri) as stream:
                head, _ = open_with_head(stream)
            rows = peek_rows(head, limit=1)
            if not rows:
                raise MlsvcError(ErrorCode.INVALID_DATA, f"{info.uri} is empty")
            names = header_names(rows[0])
        else:
            names = [a.attributeName for a in schema.attributes]
        require_columns(schema, names, info.uri)
        names_by_file[info.uri] = names
    return Layout(files, names_by_file)
