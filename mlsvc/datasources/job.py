"""The datasource job: find the files, settle the schema, and take one streaming pass for counts and statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsvc.datasources.reader import header_names, open_with_head, peek_rows
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.datasources.scan import OpenedFiles, ScanCounts, count_rows, require_columns, scan_columns
from mlsvc.datasources.schema import apply_overrides, detect_header, infer_schema, schema_from_json
from mlsvc.datasources.statistics import StatisticsAccumulator
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectInfo, ObjectStore
from mlsvc.resources import Rearrangement, Schema

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
    # The first file is fetched once: inference looks at its first bytes, and the first pass reads on from there.
    opened = OpenedFiles()
    try:
        heads: dict[str, bytes] = {}  # each file's first bytes, read once for inference and for its header
        schema = settle_schema(storage, ds, files, heads, opened)
        layout = read_layout(storage, files, schema, exact=True, heads=heads, opened=opened)
        heads.clear()
        splitting = Rearrangement.model_validate(ds["rearrangement"]).splitting if ds.get("rearrangement") else None
        limit = ctx.settings.max_record_bytes
        total = None
        if needs_row_count(splitting):
            total = count_rows(storage, files, layout.names_by_file, schema, limit, opened=opened)
        counts = ScanCounts()
        stats = StatisticsAccumulator(schema) if ds.get("compute_statistics", True) else None
        # Chunks stay arrow and numpy columns from the parser to the statistics, and each is dropped before the
        # next is read, so memory holds a few blocks of the file, whatever its size.
        for chunk in scan_columns(
            storage,
            files,
            layout.names_by_file,
            schema,
            splitting,
            total,
            counts,
            on_progress=lambda f: ctx.progress(0.05 + 0.9 * f),
            max_record_bytes=limit,
            opened=opened,
        ):
            if stats is not None:
                stats.update_columns(chunk.columns, chunk.invalid, chunk.rows)
            del chunk
    finally:
        opened.close()
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
    storage: ObjectStore,
    ds: Mapping[str, Any],
    files: list[ObjectInfo],
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
) -> Schema:
    """The caller's schema, else a schema file, else one inferred from a sample; then the caller's overrides.
    ``heads`` keeps the first bytes of the files read here, for ``read_layout``; ``opened`` the first file,
    open, for the first pass over it."""
    schema = _given_schema(storage, ds, files)
    if schema is None:
        schema = _infer(storage, files, ds.get("target"), ds.get("row_id"), heads, opened)
    return apply_overrides(
        schema, target=ds.get("target"), row_id=ds.get("row_id"), overrides=ds.get("attribute_types") or None
    )


def _given_schema(storage: ObjectStore, ds: Mapping[str, Any], files: list[ObjectInfo]) -> Schema | None:
    if ds.get("schema"):
        return Schema.model_validate(ds["schema"])
    if ds.get("schema_uri"):
        return _read_schema(storage, ds["schema_uri"], "schema_uri")
    for candidate in _schema_candidates(ds["data_uri"], files):
        if _optional_exists(storage, candidate):
            return _read_schema(storage, candidate, "the schema file beside the data")
    return None


def _read_schema(storage: ObjectStore, uri: str, what: str) -> Schema:
    try:
        return schema_from_json(storage.read_bytes(uri, SCHEMA_FILE_LIMIT))
    except MlsvcError as exc:
        raise MlsvcError(exc.code, f"{what} {uri}: {exc.message}", {**exc.details, "schema_uri": uri}) from exc


def _optional_exists(storage: ObjectStore, uri: str) -> bool:
    """Whether an optional file is there. S3 answers 403 for a missing key to callers who may not list the
    bucket, so a denied look counts as absent: the data's own read will say if access is really the problem.
    So does a place mlsvc may not look (``folder.schema`` beside a folder that is itself a local root)."""
    try:
        return storage.exists(uri)
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


def _head(
    storage: ObjectStore,
    info: ObjectInfo,
    heads: dict[str, bytes] | None,
    keep: bool = True,
    opened: OpenedFiles | None = None,
) -> bytes:
    """The first bytes of a file: from ``heads`` if they are there, else read (and kept there if ``keep``). The
    file is left open in ``opened`` if it is the first one and nothing is open there yet."""
    if heads is not None and info.uri in heads:
        return heads[info.uri]
    stream = storage.open_read(info.uri)
    try:
        head, again = open_with_head(stream)
    except BaseException:
        stream.close()
        raise
    if opened is None or not opened.add(info.uri, stream, again):
        stream.close()
    if heads is not None and keep:
        heads[info.uri] = head
    return head


def _infer(
    storage: ObjectStore,
    files: list[ObjectInfo],
    target: str | None,
    row_id: str | None,
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
) -> Schema:
    """Infer from the first file that has data rows (in a prefix, some parts may be empty or header-only)."""
    rows: list[list[str]] = []
    source = files[0].uri
    for info in files:
        head = _head(storage, info, heads, opened=opened if info is files[0] else None)
        found = peek_rows(head, limit=INFERENCE_SAMPLE_ROWS, source=info.uri)
        if found and not rows:
            rows, source = found, info.uri
        if len(found) > 1 or (found and not detect_header(found)):
            rows, source = found, info.uri
            break
    if not rows:
        raise MlsvcError(ErrorCode.INVALID_DATA, _empty_message(source, files), {"uri": source})
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
                f"{role} column '{name}' not found in {source}; columns are {names}",
                {"column": name, "columns": names},
            )
    return infer_schema(sample, has_header=has_header, target=target, row_id=row_id)


def _empty_message(source: str, files: list[ObjectInfo]) -> str:
    if len(files) == 1:
        return f"{source} is empty (no lines of text); upload the data again, or point at the right file"
    return f"all {len(files)} files under the prefix are empty (e.g. {source}); point at the folder that holds the data"


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (", …" if len(names) > 10 else "")


def read_layout(
    storage: ObjectStore,
    files: list[ObjectInfo],
    schema: Schema,
    exact: bool = False,
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
) -> Layout:
    """Each file's column names (its header, or the schema's order), checked against the schema: the files must
    have every attribute and, if ``exact`` (a new datasource's schema must describe its data), no other column.

    An empty file in a prefix of several adds no rows (tools that write parts often leave some empty); a file
    that is the whole datasource and is empty fails later, with the count of its rows. ``heads`` may hold the
    files' first bytes already, and ``opened`` takes the first file open (see ``settle_schema``).
    """
    names_by_file: dict[str, list[str]] = {}
    expected = [a.attributeName for a in schema.attributes]
    for info in files:
        # The files inference did not read, one at a time; the first is kept open for the first pass.
        head = _head(storage, info, heads, keep=False, opened=opened if info is files[0] else None)
        rows = peek_rows(head, limit=1, source=info.uri)
        if not rows:
            if len(files) == 1:
                raise MlsvcError(ErrorCode.INVALID_DATA, _empty_message(info.uri, files), {"uri": info.uri})
            names_by_file[info.uri] = expected
            continue
        if schema.dataFileContainsHeader:
            names = header_names(rows[0])
            require_columns(schema, names, info.uri, exact=exact)
        else:
            names = expected
            if len(rows[0]) != len(expected) and exact:
                raise MlsvcError(
                    ErrorCode.INVALID_DATA,
                    f"the schema has {len(expected)} attributes but the first row of {info.uri} has "
                    f"{len(rows[0])} fields; a file without a header must hold exactly the schema's attributes, "
                    "in order (or set dataFileContainsHeader if its first line names the columns)",
                    {"uri": info.uri, "attributes": len(expected), "fields": len(rows[0])},
                )
        names_by_file[info.uri] = names
    return Layout(files, names_by_file)
