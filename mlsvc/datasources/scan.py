"""One streaming pass over a datasource's files: raw chunks → typed rows the split keeps, with invalid rows counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsvc.datasources.plan import OpenedFiles, ReadPlan
from mlsvc.datasources.reader import BadRows, RawChunk, iter_chunks, open_with_head
from mlsvc.datasources.rearrangement import needs_row_count, select_rows
from mlsvc.datasources.values import Column, coerce_columns, objects
from mlsvc.objects import ObjectInfo, ObjectStore


@dataclass
class TypedChunk:
    """Valid rows the split keeps: typed values, and the target's raw tokens (labels as they appear in the data)."""

    typed: pd.DataFrame
    invalid: pd.DataFrame
    raw_target: pd.Series | None


@dataclass
class ColumnChunk:
    """The same rows as a ``TypedChunk``, column by column and without Python objects: NUMERIC and BINARY as
    float64 numpy, CATEGORICAL and TEXT as arrow arrays (see ``values.coerce_array``). ``invalid`` has the
    masks of the NUMERIC and BINARY columns; ``positions`` are the rows' places in their raw chunk (the typed
    frame's index); ``raw_target`` the target's tokens as read."""

    columns: dict[str, Column]
    invalid: dict[str, np.ndarray]
    rows: int
    positions: np.ndarray
    raw_target: pa.Array | None
    nbytes: int = 0  # about the bytes of the file its raw chunk was read from (for progress)

    def typed_chunk(self) -> TypedChunk:
        """As the object contract has it (``values.coerce_frame``'s typed and invalid frames)."""
        index = pd.Index(self.positions)
        typed = pd.DataFrame(
            {
                name: pd.Series(column, index=index, dtype=np.float64)
                if isinstance(column, np.ndarray)
                else pd.Series(objects(column), index=index, dtype=object)
                for name, column in self.columns.items()
            },
            index=index,
        )
        none = np.zeros(self.rows, dtype=bool)
        invalid = pd.DataFrame({name: self.invalid.get(name, none) for name in self.columns}, index=index, dtype=bool)
        raw_target = None
        if self.raw_target is not None:
            raw_target = pd.Series(objects(self.raw_target), index=index, dtype=object).str.strip()
        return TypedChunk(typed, invalid, raw_target)


EXAMPLES = 5
_ARROW_POOL = pa.default_memory_pool()


@dataclass
class ScanCounts:
    """What one pass saw. Every data row is read (``seen_rows``); a row with the wrong number of fields is
    bad wherever it is; of the others the split keeps some (``kept_rows``), and each kept row is either used
    or invalid (a value that cannot be read as its attribute's type)."""

    total_rows: int = 0
    kept_rows: int = 0
    used_rows: int = 0
    invalid_rows: int = 0
    bad_rows: BadRows = field(default_factory=BadRows)
    invalid_by_column: Counter[str] = field(default_factory=Counter)
    invalid_examples: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # attribute → type, to say what a value should be

    @property
    def all_invalid(self) -> int:
        return self.invalid_rows + self.bad_rows.count

    @property
    def seen_rows(self) -> int:
        """Every data row read so far: parsed ones and those with the wrong number of fields."""
        return self.total_rows + self.bad_rows.count

    @property
    def invalid_fraction(self) -> float:
        """Invalid rows among the rows the datasource takes (a ragged row cannot be placed, so it counts)."""
        considered = self.kept_rows + self.bad_rows.count
        return self.all_invalid / considered if considered else 0.0

    def add(self, other: ScanCounts) -> None:
        """Add what typing one chunk counted (its rows kept, used and invalid, and the first invalid values)."""
        self.kept_rows += other.kept_rows
        self.used_rows += other.used_rows
        self.invalid_rows += other.invalid_rows
        self.invalid_by_column.update(other.invalid_by_column)
        for column, found in other.invalid_examples.items():
            examples = self.invalid_examples.setdefault(column, [])
            examples.extend(found[: EXAMPLES - len(examples)])

    def add_pass(self, other: ScanCounts) -> None:
        """Add what a pass over the next part of the data counted: its rows read and ragged rows too."""
        self.total_rows += other.total_rows
        self.bad_rows.extend(other.bad_rows)
        self.add(other)

    def note_invalid(self, source: str, raw: pa.RecordBatch, invalid: dict[str, np.ndarray], lines: np.ndarray) -> None:
        """Count the invalid values of a chunk's columns, keeping the first few with their file and line."""
        for column, flags in invalid.items():
            count = int(np.count_nonzero(flags))
            if not count:
                continue
            self.invalid_by_column[column] += count
            examples = self.invalid_examples.setdefault(column, [])
            room = EXAMPLES - len(examples)
            if room > 0:
                rows = np.flatnonzero(flags)[:room]
                values = raw.column(column).take(pa.array(rows)).to_pylist()
                examples.extend(
                    {"file": source, "line": int(line), "value": str(value)[:40]}
                    for line, value in zip(lines[rows], values, strict=True)
                )

    def invalid_message(self, limit: float) -> str:
        considered = self.kept_rows + self.bad_rows.count
        parts = [
            f"{self.all_invalid} of {considered} rows are invalid ({self.invalid_fraction:.1%}), more than "
            f"the limit of {limit:.0%}"
        ]
        worst = [
            f"'{c}' ({n} values that are not {self.kind_of(c)}, e.g. {_where(self.invalid_examples[c])})"
            for c, n in self.invalid_by_column.most_common(3)
        ]
        if worst:
            parts.append("worst columns: " + ", ".join(worst))
        if self.bad_rows.count:
            examples = "; ".join(self.bad_rows.examples)
            parts.append(f"{self.bad_rows.count} rows have the wrong number of fields ({examples})")
        return (
            "; ".join(parts) + ". Fix the data, correct the attribute types (attribute_types or the schema), "
            "or raise max_invalid_fraction."
        )

    def kind_of(self, column: str) -> str:
        kind = self.types.get(column, "")
        return {"NUMERIC": "numbers", "BINARY": "binary flags (0/1, true/false, yes/no)"}.get(kind, "readable")


def _where(examples: list[dict[str, object]]) -> str:
    files = {e["file"] for e in examples}
    if len(files) == 1:
        shown = ", ".join(f"line {e['line']} '{e['value']}'" for e in examples)
        return f"{shown} in {files.pop()}"
    return ", ".join(f"{e['file']} line {e['line']} '{e['value']}'" for e in examples)


def scan(
    objects: ObjectStore,
    plan: ReadPlan,
    counts: ScanCounts,
    on_progress: Callable[[float], None] | None = None,
    keep_invalid: bool = False,
    opened: OpenedFiles | None = None,
) -> Iterator[TypedChunk]:
    """Yield the kept, valid rows of every file of the plan in order, counting what was seen in ``counts``.

    With ``keep_invalid`` the rows holding invalid values are yielded too (those values are missing in
    ``typed`` and flagged in ``invalid``), for readers that must answer for every row, such as batch scoring;
    they are still counted in ``counts.invalid_rows``, but not in ``counts.used_rows``.
    """
    for chunk in scan_columns(objects, plan, counts, on_progress, keep_invalid, opened):
        typed = chunk.typed_chunk()
        del chunk
        yield typed
        del typed


def scan_columns(
    objects: ObjectStore,
    plan: ReadPlan,
    counts: ScanCounts,
    on_progress: Callable[[float], None] | None = None,
    keep_invalid: bool = False,
    opened: OpenedFiles | None = None,
) -> Iterator[ColumnChunk]:
    """``scan``, yielding ``ColumnChunk`` s: for readers that can work on arrow and numpy columns (statistics),
    so no cell becomes a Python object. A consumer should drop each chunk before asking for the next. A file
    held in ``opened`` is read from there rather than fetched again."""
    for piece in read_untyped(objects, plan, counts, on_progress, opened):
        chunk, seen = piece.typed(keep_invalid)
        del piece
        counts.add(seen)
        if chunk is not None:
            yield chunk
        del chunk
        # Arrow's default allocator (mimalloc) keeps the pages a chunk's arrays freed; handing them back
        # after each chunk keeps the peak some 30 MB lower for a cost too small to measure.
        _ARROW_POOL.release_unused()


@dataclass
class Untyped:
    """A raw chunk read, placed and counted as seen, still to be typed: by the reading thread (``scan_columns``)
    or, in order, by threads of its own (batch scoring), whose ``ScanCounts`` are then added in the chunks'
    order so that counts and examples are those of one pass."""

    raw: RawChunk
    source: str
    file_start: int
    wanted: list[str]
    plan: ReadPlan

    def typed(self, keep_invalid: bool) -> tuple[ColumnChunk | None, ScanCounts]:
        """The rows the split keeps, typed; and what typing them counted, to ``ScanCounts.add`` to the pass's."""
        seen = ScanCounts(types=_types(self.plan))
        return _typed(self.raw, self.source, self.file_start, self.wanted, self.plan, seen, keep_invalid), seen


def read_untyped(
    objects: ObjectStore,
    plan: ReadPlan,
    counts: ScanCounts,
    on_progress: Callable[[float], None] | None = None,
    opened: OpenedFiles | None = None,
) -> Iterator[Untyped]:
    """Every raw chunk of the plan's files in order, counted in ``counts.total_rows`` (and ragged rows in its
    ``bad_rows``) as it is read, so a split's ordinals run on across files whenever the chunks are typed."""
    total_bytes = sum(f.size for f in plan.files) or 1
    done_bytes = 0
    counts.types = _types(plan)
    for info in plan.files:
        file_start = counts.seen_rows  # ordinals are per file; the split needs them datasource-wide
        wanted = _wanted(plan, info)
        for raw in _raw_chunks(objects, plan, info, counts.bad_rows, opened):
            counts.total_rows += raw.batch.num_rows
            yield Untyped(raw, info.uri, file_start, wanted, plan)
            del raw
        done_bytes += info.size
        if on_progress:
            on_progress(done_bytes / total_bytes)


def read_range_untyped(
    objects: ObjectStore, plan: ReadPlan, info: ObjectInfo, start: int, end: int, first_line: int, counts: ScanCounts
) -> Iterator[Untyped]:
    """The raw chunks of the whole records in bytes ``[start, end)`` of one of the plan's files (a partition cut by
    ``mlsvc.datasources.partitions``, the header not in it), their line numbers the file's from ``first_line``.
    Only for plans whose split places rows without their position in the datasource (no split, or a random one)."""
    if needs_row_count(plan.splitting):
        raise ValueError("a sequential split places rows by position: read such a plan from the start")
    counts.types = _types(plan)
    wanted = _wanted(plan, info)
    with objects.open_range(info.uri, start, end) as stream:
        chunks = iter_chunks(
            info.uri,
            stream,
            plan.names_by_file[info.uri],
            has_header=False,
            bad_rows=counts.bad_rows,
            max_record_bytes=plan.max_record_bytes,
            first_line=first_line,
        )
        for raw in chunks:
            counts.total_rows += raw.batch.num_rows
            yield Untyped(raw, info.uri, 0, wanted, plan)
            del raw


def _wanted(plan: ReadPlan, info: ObjectInfo) -> list[str]:
    """The file's columns the plan's schema reads, in the file's order. A reader may want only some of them (a
    model's features); the split still hashes whole rows."""
    attributes = {a.attributeName for a in plan.schema.attributes}
    return [n for n in plan.names_by_file[info.uri] if n in attributes]


def _types(plan: ReadPlan) -> dict[str, str]:
    return {a.attributeName: a.attributeType.value for a in plan.schema.attributes}


def _typed(
    raw: RawChunk,
    source: str,
    file_start: int,
    wanted: list[str],
    plan: ReadPlan,
    counts: ScanCounts,
    keep_invalid: bool,
) -> ColumnChunk | None:
    """One raw chunk's rows the split keeps, typed and counted; None when none is left to yield."""
    batch, lines = raw.batch, raw.line_numbers
    keep = select_rows(batch, file_start + raw.ordinals, plan.total_rows, plan.splitting)
    if not keep.any():
        return None
    positions = np.arange(batch.num_rows)
    if not keep.all():
        batch, lines, positions = batch.filter(pa.array(keep)), lines[keep], positions[keep]
    if len(wanted) != batch.num_columns:
        batch = batch.select(wanted)
    rows = batch.num_rows
    counts.kept_rows += rows
    columns, invalid = coerce_columns(batch, plan.schema)
    counts.note_invalid(source, batch, invalid, lines)
    bad = np.zeros(rows, dtype=bool)
    for flags in invalid.values():
        bad |= flags
    invalid_rows = int(np.count_nonzero(bad))
    counts.invalid_rows += invalid_rows
    counts.used_rows += rows - invalid_rows
    target = plan.schema.targetAttributeName
    raw_target = batch.column(target) if target else None
    if invalid_rows and not keep_invalid:
        if invalid_rows == rows:
            return None
        good = ~bad
        mask = pa.array(good)
        columns = {name: _rows_of(column, good, mask) for name, column in columns.items()}
        invalid = {name: flags[good] for name, flags in invalid.items()}
        positions = positions[good]
        raw_target = raw_target.filter(mask) if raw_target is not None else None
        rows = len(positions)
    return ColumnChunk(columns, invalid, rows, positions, raw_target, raw.nbytes)


def _rows_of(column: np.ndarray | pa.Array, keep: np.ndarray, mask: pa.Array) -> np.ndarray | pa.Array:
    """The rows ``keep`` (as a numpy mask, and as ``mask`` for arrow) of a numpy or arrow column."""
    return column[keep] if isinstance(column, np.ndarray) else column.filter(mask)


def count_rows(objects: ObjectStore, plan: ReadPlan, opened: OpenedFiles | None = None) -> int:
    """A counting pass, needed only by a sequential split (rows are placed by position): every data row,
    those with the wrong number of fields included, as ``ScanCounts.seen_rows`` will count them."""
    bad = BadRows()
    rows = sum(len(chunk) for info in plan.files for chunk in _raw_chunks(objects, plan, info, bad, opened))
    return rows + bad.count


def _raw_chunks(
    objects: ObjectStore, plan: ReadPlan, info: ObjectInfo, bad_rows: BadRows, opened: OpenedFiles | None = None
) -> Iterator[RawChunk]:
    held = opened.take(info.uri) if opened is not None else None
    stream, from_start = held if held is not None else (objects.open_read(info.uri), None)
    with stream:
        if from_start is None:
            _, from_start = open_with_head(stream)
        yield from iter_chunks(
            info.uri,
            from_start,
            plan.names_by_file[info.uri],
            has_header=plan.schema.dataFileContainsHeader,
            bad_rows=bad_rows,
            max_record_bytes=plan.max_record_bytes,
        )
