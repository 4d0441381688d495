"""One streaming pass over a datasource's files: raw chunks → typed rows the split keeps, with invalid rows counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlsvc.datasources.reader import DEFAULT_MAX_RECORD_BYTES, BadRows, iter_chunks, open_with_head
from mlsvc.datasources.rearrangement import select_rows
from mlsvc.datasources.values import coerce_frame
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Schema, Splitting
from mlsvc.storage import ObjectInfo, Storage


@dataclass
class TypedChunk:
    """Valid rows the split keeps: typed values, and the target's raw tokens (labels as they appear in the data)."""

    typed: pd.DataFrame
    invalid: pd.DataFrame
    raw_target: pd.Series | None


@dataclass
class ScanCounts:
    """What one pass saw: every row is either used, invalid, or left out by the split."""

    total_rows: int = 0
    used_rows: int = 0
    invalid_rows: int = 0
    bad_rows: BadRows = field(default_factory=BadRows)
    invalid_by_column: Counter[str] = field(default_factory=Counter)
    invalid_examples: dict[str, list[int]] = field(default_factory=dict)

    @property
    def all_invalid(self) -> int:
        return self.invalid_rows + self.bad_rows.count

    def note_invalid(self, invalid: pd.DataFrame, lines: np.ndarray) -> None:
        for column in invalid.columns:
            flags = invalid[column].to_numpy()
            count = int(flags.sum())
            if count:
                self.invalid_by_column[column] += count
                examples = self.invalid_examples.setdefault(column, [])
                examples.extend(int(x) for x in lines[flags][: 5 - len(examples)])

    def invalid_message(self, limit: float) -> str:
        seen = self.total_rows + self.bad_rows.count
        worst = ", ".join(
            f"'{c}' ({n} values, e.g. lines {self.invalid_examples.get(c, [])})"
            for c, n in self.invalid_by_column.most_common(3)
        )
        parts = [f"{self.all_invalid} of {seen} rows are invalid, more than the limit of {limit:.0%}"]
        if worst:
            parts.append(f"worst columns: {worst}")
        if self.bad_rows.count:
            examples = "; ".join(self.bad_rows.examples)
            parts.append(f"{self.bad_rows.count} rows have the wrong number of fields ({examples})")
        return "; ".join(parts) + ". Fix the data, correct the schema's types, or raise max_invalid_fraction."


def scan(
    storage: Storage,
    files: list[ObjectInfo],
    names_by_file: dict[str, list[str]],
    schema: Schema,
    splitting: Splitting | None,
    total_rows: int | None,
    counts: ScanCounts,
    on_progress: Callable[[float], None] | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[TypedChunk]:
    """Yield the kept, valid rows of every file in order, counting what was seen in ``counts``."""
    total_bytes = sum(f.size for f in files) or 1
    done_bytes = 0
    target = schema.targetAttributeName
    for info in files:
        for raw, lines in _raw_chunks(storage, info, names_by_file[info.uri], schema, counts.bad_rows,
                                      max_record_bytes):
            first = counts.total_rows
            counts.total_rows += len(raw)
            keep = select_rows(raw, first, total_rows, splitting)
            if not keep.any():
                continue
            raw = raw.loc[keep]
            typed, invalid = coerce_frame(raw, schema)
            bad = invalid.to_numpy().any(axis=1)
            counts.note_invalid(invalid, lines[keep])
            counts.invalid_rows += int(bad.sum())
            good = ~bad
            counts.used_rows += int(good.sum())
            raw_target = raw[target][good].str.strip() if target else None
            yield TypedChunk(typed[good], invalid[good], raw_target)
        done_bytes += info.size
        if on_progress:
            on_progress(done_bytes / total_bytes)


def count_rows(storage: Storage, files: list[ObjectInfo], names_by_file: dict[str, list[str]], schema: Schema,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> int:
    """A counting pass, needed only by a sequential split (rows are placed by position)."""
    bad = BadRows()
    return sum(len(raw) for info in files
               for raw, _ in _raw_chunks(storage, info, names_by_file[info.uri], schema, bad, max_record_bytes))


def _raw_chunks(
    storage: Storage, info: ObjectInfo, names: list[str], schema: Schema, bad_rows: BadRows, max_record_bytes: int
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    with storage.open_read(info.uri) as stream:
        _, stream = open_with_head(stream)
        for chunk in iter_chunks(info.uri, stream, names, has_header=schema.dataFileContainsHeader,
                                 bad_rows=bad_rows, max_record_bytes=max_record_bytes):
            yield chunk.frame, np.asarray(chunk.line_numbers)


def require_columns(schema: Schema, names: list[str], source: str) -> None:
    """A schema that names columns the file does not have cannot be used."""
    missing = [a.attributeName for a in schema.attributes if a.attributeName not in names]
    if missing:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the schema names columns that {source} does not have: {missing}; the file's columns are {names}",
        )
