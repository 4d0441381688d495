"""What one pass over a datasource reads: its files, each file's columns, the typing schema, the split, the row id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from mlsvc.datasources.reader import DEFAULT_MAX_RECORD_BYTES, header_names, open_with_head, peek_rows
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectInfo, ObjectStore
from mlsvc.resources import Attribute, AttributeType, Rearrangement, Schema, Splitting


@dataclass(frozen=True)
class ReadPlan:
    """Which files to read and how: the column names of each (its layout), the schema that types them, the
    rows the split keeps (with the row count a sequential split places them by), the row id column, the
    largest record allowed, and ``source``, what the data is called in messages."""

    files: list[ObjectInfo]
    names_by_file: dict[str, list[str]]
    schema: Schema
    splitting: Splitting | None = None
    total_rows: int | None = None
    row_id: str | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    source: str = "the data"

    @classmethod
    def of_datasource(
        cls,
        objects: ObjectStore,
        ds: Mapping[str, Any],
        schema: Schema,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        opened: OpenedFiles | None = None,
    ) -> ReadPlan:
        """A COMPLETED datasource's files read with ``schema``: the rows its rearrangement takes, placed by the
        row count its job recorded. The first file is left open in ``opened`` for the pass to read on."""
        files = [objects.stat(uri) for uri in ds["files"]]
        splitting = splitting_of(ds)
        return cls(
            files,
            read_layout(objects, files, schema, opened=opened),
            schema,
            splitting,
            ds.get("row_count") if needs_row_count(splitting) else None,
            schema.rowId,
            max_record_bytes,
            f"datasource '{ds['id']}'",
        )

    @classmethod
    def of_data_uri(
        cls,
        objects: ObjectStore,
        data_uri: str,
        attributes: list[Attribute],
        row_id: str | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        opened: OpenedFiles | None = None,
    ) -> ReadPlan:
        """Every row of the data files at a bare URI (no datasource, so no schema of its own): ``attributes``
        typed as given, and the ``row_id`` column carried along as it is. The first file is left open in
        ``opened`` for the pass to read on."""
        names = {a.attributeName for a in attributes}
        extra = [Attribute(attributeName=row_id, attributeType=AttributeType.CATEGORICAL)] if row_id else []
        schema = Schema(attributes=[*attributes, *[a for a in extra if a.attributeName not in names]], rowId=row_id)
        files = objects.list_data_files(data_uri)
        layout = read_layout(objects, files, schema, opened=opened)
        return cls(files, layout, schema, None, None, row_id, max_record_bytes, data_uri)

    @property
    def needs_counting(self) -> bool:
        """Whether the split places rows by position and the total is not known yet (a counting pass first)."""
        return self.total_rows is None and needs_row_count(self.splitting)

    def only(self, info: ObjectInfo) -> ReadPlan:
        """The same plan for one of its files; a split still places its rows among all the files' when the
        passes share their ``ScanCounts``."""
        return replace(self, files=[info], names_by_file={info.uri: self.names_by_file[info.uri]})


def splitting_of(ds: Mapping[str, Any]) -> Splitting | None:
    """The split of a datasource's rearrangement, if it has one."""
    rearrangement = ds.get("rearrangement")
    return Rearrangement.model_validate(rearrangement).splitting if rearrangement else None


def model_schema(ds_schema: Schema, features: list[Attribute], ds_id: str) -> Schema:
    """The datasource's columns (all of them, in order, so headerless files still line up), the model's features
    read as the model was trained (their types and missing tokens: the datasource's own schema may call a column
    otherwise), the other columns as the datasource reads them."""
    known = {a.attributeName for a in ds_schema.attributes}
    missing = sorted(a.attributeName for a in features if a.attributeName not in known)
    if missing:
        raise MlsvcError(ErrorCode.INVALID_DATA, f"datasource '{ds_id}' lacks attributes the model uses: {missing}")
    by_name = {a.attributeName: a for a in features}
    attributes = [by_name.get(a.attributeName, a) for a in ds_schema.attributes]
    return ds_schema.model_copy(
        update={"attributes": attributes, "targetAttributeName": None, "rowWeight": None, "excludedAttributeNames": []}
    )


# --- the layout: each file's column names, from its first bytes ---


class OpenedFiles:
    """A file opened ahead of a pass (its first bytes looked at, as inference does), for the next pass over it
    to read from the start without fetching it again. At most one is held; ``close`` what is left."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[BinaryIO, BinaryIO]] = {}

    def add(self, uri: str, stream: BinaryIO, from_start: BinaryIO) -> bool:
        """Hold ``stream`` (to close) and ``from_start`` (its bytes from the beginning); False if one is held."""
        if self._held:
            return False
        self._held[uri] = (stream, from_start)
        return True

    def take(self, uri: str) -> tuple[BinaryIO, BinaryIO] | None:
        return self._held.pop(uri, None)

    def close(self) -> None:
        for stream, _ in self._held.values():
            stream.close()
        self._held.clear()


def read_layout(
    objects: ObjectStore,
    files: list[ObjectInfo],
    schema: Schema,
    exact: bool = False,
    heads: dict[str, bytes] | None = None,
    opened: OpenedFiles | None = None,
) -> dict[str, list[str]]:
    """Each file's column names (its header, or the schema's order), checked against the schema: the files must
    have every attribute and, if ``exact`` (a new datasource's schema must describe its data), no other column.

    An empty file in a prefix of several adds no rows (tools that write parts often leave some empty); a file
    that is the whole datasource and is empty fails later, with the count of its rows. ``heads`` may hold the
    files' first bytes already, and ``opened`` takes the first file open (see ``datasources.job.settle_schema``).
    """
    names_by_file: dict[str, list[str]] = {}
    expected = [a.attributeName for a in schema.attributes]
    for info in files:
        # The files inference did not read, one at a time; the first is kept open for the first pass.
        head = read_head(objects, info, heads, keep=False, opened=opened if info is files[0] else None)
        rows = peek_rows(head, limit=1, source=info.uri)
        if not rows:
            if len(files) == 1:
                raise MlsvcError(ErrorCode.INVALID_DATA, empty_message(info.uri, files), {"uri": info.uri})
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
    return names_by_file


def read_head(
    objects: ObjectStore,
    info: ObjectInfo,
    heads: dict[str, bytes] | None,
    keep: bool = True,
    opened: OpenedFiles | None = None,
) -> bytes:
    """The first bytes of a file: from ``heads`` if they are there, else read (and kept there if ``keep``). The
    file is left open in ``opened`` if it is the first one and nothing is open there yet."""
    if heads is not None and info.uri in heads:
        return heads[info.uri]
    stream = objects.open_read(info.uri)
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


def empty_message(source: str, files: list[ObjectInfo]) -> str:
    if len(files) == 1:
        return f"{source} is empty (no lines of text); upload the data again, or point at the right file"
    return f"all {len(files)} files under the prefix are empty (e.g. {source}); point at the folder that holds the data"


def require_columns(schema: Schema, names: list[str], source: str, exact: bool = True) -> None:
    """The file must have every column the schema names and, if ``exact``, no others (order may differ)."""
    attributes = [a.attributeName for a in schema.attributes]
    missing = [n for n in attributes if n not in names]
    if missing and not exact:  # a model's columns (batch, evaluation): the caller gave no schema
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the model reads columns that {source} does not have: {missing}; the file's columns are {names}. "
            "Score a file with the columns the model was trained on (names are case-sensitive)",
            {"uri": source, "missing_columns": missing, "columns": names},
        )
    if missing:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the schema names columns that {source} does not have: {missing}; the file's columns are {names}. "
            "Correct the attribute names (they are case-sensitive), or point at the right file",
            {"uri": source, "missing_columns": missing, "columns": names},
        )
    extra = [n for n in names if n not in attributes]
    if extra and exact:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{source} has columns the schema does not describe: {extra}; add them to the schema's attributes "
            "(and to excludedAttributeNames to leave them out of training)",
            {"uri": source, "extra_columns": extra, "columns": names},
        )
