"""The datasource job: find the files, settle the schema, and take one streaming pass for counts and statistics (in
this worker, or in parts on a Dask cluster when one is configured)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsvc.datasources.plan import OpenedFiles, ReadPlan, empty_message, read_head, read_layout, splitting_of
from mlsvc.datasources.reader import DEFAULT_MAX_RECORD_BYTES, head_through_first_row, header_names, peek_rows
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.datasources.scan import ScanCounts, count_rows, scan_columns
from mlsvc.datasources.schema import (
    apply_overrides,
    detect_header,
    infer_schema,
    schema_from_json,
    settle_missing_values,
)
from mlsvc.datasources.statistics import StatisticsAccumulator
from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.objects import ObjectInfo, ObjectStore
from mlsvc.resources import AttributeType, Schema

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext

log = logging.getLogger("mlsvc.datasources")
SCHEMA_FILE_LIMIT = 1024 * 1024
INFERENCE_SAMPLE_ROWS = 20_000


def run(ctx: JobContext) -> Mapping[str, Any]:
    if ctx.resource.get("sql"):
        # Imported here: only a SQL datasource's job needs the database drivers.
        from mlsvc.datasources.sql import query_then_read

        return query_then_read(ctx, _read)
    return _read(ctx, ctx.progress)


def _read(ctx: JobContext, report: Callable[..., None]) -> Mapping[str, Any]:
    """The datasource's CSV read: ``report`` takes (fraction, **fields) as progress (``JobContext.progress``)."""
    ds = ctx.resource
    files = ctx.objects.list_data_files(ds["data_uri"])
    report(0.02, files=[f.uri for f in files])
    # The first file is fetched once: inference looks at its first bytes, and the first pass reads on from there.
    opened = OpenedFiles()
    try:
        plan = _first_plan(ctx, ds, files, opened)
        counts = ScanCounts()
        wanted = bool(ds.get("compute_statistics", True))

        def progress(fraction: float) -> None:
            report(0.05 + 0.9 * fraction)

        if _on_cluster(ctx, plan):
            opened.close()  # the Dask workers read the data themselves
            from mlsvc.datasources.partitioned import pass_on_cluster

            stats = pass_on_cluster(ctx.settings, ctx.objects, plan, counts, wanted, progress)
        else:
            stats = _pass_here(ctx.objects, plan, counts, wanted, opened, progress)
    finally:
        opened.close()
    schema = plan.schema
    _check_counts(counts, ds, schema, files)
    return {
        "schema": schema.model_dump(mode="json"),
        "target": schema.targetAttributeName,
        "row_id": schema.rowId,
        "files": [f.uri for f in files],
        "row_count": counts.seen_rows,
        "used_row_count": counts.used_rows,
        "invalid_row_count": counts.all_invalid,
        "statistics": _statistics(stats, counts),
    }


def _pass_here(
    objects: ObjectStore,
    plan: ReadPlan,
    counts: ScanCounts,
    wanted: bool,
    opened: OpenedFiles,
    on_progress: Callable[[float], None],
) -> StatisticsAccumulator | None:
    """The pass in this worker. Chunks stay arrow and numpy columns from the parser to the statistics, and each
    is dropped before the next is read, so memory holds a few blocks of the file, whatever its size."""
    stats = StatisticsAccumulator(plan.schema) if wanted else None
    for chunk in scan_columns(objects, plan, counts, on_progress=on_progress, opened=opened):
        if stats is not None:
            stats.update_columns(chunk.columns, chunk.invalid, chunk.rows)
        del chunk
    return stats


def _on_cluster(ctx: JobContext, plan: ReadPlan) -> bool:
    """Whether the pass runs in parts on Dask: when a scheduler is configured, unless a sequential split places
    rows by their position (such a pass runs here, and the log says why)."""
    if not ctx.settings.dask_scheduler:
        return False
    if needs_row_count(plan.splitting):
        log.info("a sequential split places rows by their position: this datasource's pass runs in the worker")
        return False
    return True


def _first_plan(ctx: JobContext, ds: Mapping[str, Any], files: list[ObjectInfo], opened: OpenedFiles) -> ReadPlan:
    """How the first pass reads a new datasource: the schema settled, each file's columns checked against it
    exactly, and the rows counted first if the split needs it (``opened`` keeps the first file for that pass)."""
    heads: dict[str, bytes] = {}  # each file's first bytes, read once for inference and for its header
    limit = ctx.settings.max_record_bytes
    schema = settle_schema(ctx.objects, ds, files, heads, opened, limit)
    names_by_file = read_layout(ctx.objects, files, schema, exact=True, heads=heads, opened=opened)
    heads.clear()  # not needed by the passes, which read the files again
    plan = ReadPlan(files, names_by_file, schema, splitting_of(ds), None, schema.rowId, limit, ds["data_uri"])
    if plan.needs_counting:
        plan = replace(plan, total_rows=count_rows(ctx.objects, plan, opened=opened))
    return plan


def _statistics(stats: StatisticsAccumulator | None, counts: ScanCounts) -> dict[str, Any] | None:
    if stats is None:
        return None
    # The pass left the rows holding an invalid value out of the statistics (local and Dask alike); their invalid
    # values still count in each attribute's figures, as in the invalid rows' table below them.
    stats.add_skipped_invalid(counts.invalid_by_column)
    result = stats.result()
    result["invalid_rows"] = {
        "total": counts.all_invalid,
        "wrong_field_count": counts.bad_rows.count,
        "by_column": dict(counts.invalid_by_column),
        "examples": {"by_column": counts.invalid_examples, "wrong_field_count": counts.bad_rows.examples},
    }
    return result


def _check_counts(counts: ScanCounts, ds: Mapping[str, Any], schema: Schema, files: list[ObjectInfo]) -> None:
    if counts.seen_rows == 0:
        what = "has no data rows" + (" (at most a header line)" if schema.dataFileContainsHeader else "")
        where = ds["data_uri"] if len(files) == 1 else f"{ds['data_uri']} ({len(files)} files)"
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{where} {what}; a datasource needs at least one row of data",
            {"uri": ds["data_uri"]},
        )
    limit = float(ds.get("max_invalid_fraction", 0.1))
    if counts.invalid_fraction > limit:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            counts.invalid_message(limit),
            {
                "invalid_rows": counts.all_invalid,
                "by_column": dict(counts.invalid_by_column),
                "wrong_field_count": counts.bad_rows.count,
            },
        )
    if counts.used_rows == 0:
        if counts.kept_rows == 0:
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"the rearrangement keeps none of the {counts.seen_rows} rows; widen "
                "percentBegin..percentEnd (or check complement)",
            )
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"all {counts.kept_rows} rows the datasource takes are invalid; " + counts.invalid_message(limit),
        )


def settle_schema(
    objects: ObjectStore,
    ds: Mapping[str, Any],
    files: list[ObjectInfo],
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Schema:
    """The caller's schema, else a schema file, else one inferred from a sample; then the caller's overrides, and
    each column's missing tokens (``schema.settle_missing_values``: the datasource's ``missing_values``, or the
    defaults less those a sampled CATEGORICAL column holds as frequent levels). ``heads`` keeps the first bytes of
    the files read here, for ``plan.read_layout``; ``opened`` the first file, open, for the first pass over it."""
    missing_values = ds.get("missing_values")
    schema = _given_schema(objects, ds, files)
    sample = None
    if schema is None:
        schema, sample = _infer(
            objects, files, ds.get("target"), ds.get("row_id"), heads, opened, max_record_bytes, missing_values
        )
    schema = apply_overrides(
        schema, target=ds.get("target"), row_id=ds.get("row_id"), overrides=ds.get("attribute_types") or None
    )
    if sample is None and missing_values is None and _has_default_categories(schema):
        sample = _sample_for(schema, objects, files, heads, opened, max_record_bytes)
    return settle_missing_values(schema, sample, missing_values)


def _has_default_categories(schema: Schema) -> bool:
    """Whether a CATEGORICAL attribute reads the default missing tokens, so that a sample may make some levels."""
    return any(a.attributeType is AttributeType.CATEGORICAL and a.missingValues is None for a in schema.attributes)


def _sample_for(
    schema: Schema,
    objects: ObjectStore,
    files: list[ObjectInfo],
    heads: dict[str, bytes] | None,
    opened: OpenedFiles | None,
    max_record_bytes: int,
) -> pd.DataFrame | None:
    """The first rows of the files a given schema describes, as raw tokens under the attributes' names, as inference
    would sample them. None when they cannot be sampled (no rows, other columns, bytes that do not parse): the layout
    check and the pass then say what is wrong, as they did before a sample was taken here."""
    try:
        rows, _ = _first_rows(objects, files, heads, opened, max_record_bytes)
    except MlsvcError:
        return None
    names = [a.attributeName for a in schema.attributes]
    if schema.dataFileContainsHeader:
        if not rows or not set(names) <= set(header := header_names(rows[0])):
            return None
        names, body = header, rows[1:]
    else:
        body = rows
    width = len(names)
    return pd.DataFrame([(r + [""] * width)[:width] for r in body], columns=names, dtype=object)


def _given_schema(objects: ObjectStore, ds: Mapping[str, Any], files: list[ObjectInfo]) -> Schema | None:
    if ds.get("schema"):
        return Schema.model_validate(ds["schema"])
    if ds.get("schema_uri"):
        return _read_schema(objects, ds["schema_uri"], "schema_uri")
    for candidate in _schema_candidates(ds["data_uri"], files):
        if _optional_exists(objects, candidate):
            return _read_schema(objects, candidate, "the schema file beside the data")
    return None


def _read_schema(objects: ObjectStore, uri: str, what: str) -> Schema:
    try:
        return schema_from_json(objects.read_bytes(uri, SCHEMA_FILE_LIMIT))
    except MlsvcError as exc:
        raise MlsvcError(exc.code, f"{what} {uri}: {exc.message}", {**exc.details, "schema_uri": uri}) from exc


def _optional_exists(objects: ObjectStore, uri: str) -> bool:
    """Whether an optional file is there. S3 answers 403 for a missing key to callers who may not list the
    bucket, so a denied look counts as absent: the data's own read will say if access is really the problem.
    So does a place mlsvc may not look (``folder.schema`` beside a folder that is itself a local root)."""
    try:
        return objects.exists(uri)
    except MlsvcError as exc:
        if exc.code in (ErrorCode.ACCESS_DENIED, ErrorCode.PATH_NOT_ALLOWED):
            return False
        raise


def _schema_candidates(data_uri: str, files: list[ObjectInfo]) -> list[str]:
    """Where a schema file may sit, in order: ``data.csv.schema`` beside one file; for a folder or prefix,
    ``folder.schema`` beside it, ``folder/.schema`` inside it, then the first file's own ``.schema``."""
    if len(files) == 1 and files[0].uri == data_uri:
        return [data_uri + ".schema"]
    base = data_uri.rstrip("/")
    candidates = []
    if not (base.lower().startswith("s3://") and "/" not in base[len("s3://") :]):  # a bucket has no sibling
        candidates.append(base + ".schema")
    candidates.append(base + "/.schema")
    candidates.append(files[0].uri + ".schema")
    return candidates


def _infer(
    objects: ObjectStore,
    files: list[ObjectInfo],
    target: str | None,
    row_id: str | None,
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    missing_values: list[str] | None = None,
) -> tuple[Schema, pd.DataFrame]:
    """Infer from the first file that has data rows; the schema, and the sample of raw tokens it was inferred from."""
    rows, source = _first_rows(objects, files, heads, opened, max_record_bytes)
    if not rows:
        raise MlsvcError(ErrorCode.INVALID_DATA, empty_message(source, files), {"uri": source})
    has_header = detect_header(rows)
    names = header_names(rows[0]) if has_header else [f"col_{i}" for i in range(1, len(rows[0]) + 1)]
    body = rows[1:] if has_header else rows
    if not body:
        where = source if len(files) == 1 else f"every one of the {len(files)} files (e.g. {source})"
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{where} holds only a header line ({_shown(names)}) and no data rows; a datasource needs "
            "at least one row of data",
            {"uri": source, "columns": names},
        )
    width = len(names)
    sample = pd.DataFrame([(r + [""] * width)[:width] for r in body], columns=names, dtype=object)
    for role, name in (("target", target), ("row_id", row_id)):
        if name is not None and name not in names:
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"{role} column '{name}' not found in {source}{did_you_mean(name, names)}; columns are {names}",
                {"column": name, "columns": names},
            )
    schema = infer_schema(sample, has_header=has_header, target=target, row_id=row_id, missing_values=missing_values)
    return schema, sample


def _first_rows(
    objects: ObjectStore,
    files: list[ObjectInfo],
    heads: dict[str, bytes] | None,
    opened: OpenedFiles | None,
    max_record_bytes: int,
) -> tuple[list[list[str]], str]:
    """The first rows (up to ``INFERENCE_SAMPLE_ROWS``) of the first file that has data rows (in a prefix, some parts
    may be empty or header-only), and that file; no rows when every file is empty."""
    rows: list[list[str]] = []
    source = files[0].uri
    for info in files:
        head = read_head(objects, info, heads, opened=opened if info is files[0] else None)
        # A header or first row longer than the head: read on to its end, or refuse it as over the limit.
        head = head_through_first_row(partial(objects.open_read, info.uri), head, info.uri, max_record_bytes)
        found = peek_rows(head, limit=INFERENCE_SAMPLE_ROWS, source=info.uri)
        if found and not rows:
            rows, source = found, info.uri
        if len(found) > 1 or (found and not detect_header(found)):
            rows, source = found, info.uri
            break
    return rows, source


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
