"""Batch output in Amazon ML's layout: a chunk of input typed, scored a slice at a time, written as CSV rows without a
Python object per cell, and gzipped as a member of its own (a file of members one after another is one gzip file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from isal import isal_zlib

from mlsvc.datasources.scan import ScanCounts, Untyped
from mlsvc.prediction.labels import threshold_or_default
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.resources import ModelType

SLICE_ROWS = 8192  # rows scored at a time within a chunk
# ISA-L's deflate at level 1: on churn's output 2.5 ns a byte against zlib's 7.2 at its level 1 (and 1.24 s a
# million rows at zlib's default 6), for a slightly smaller file.
GZIP_LEVEL = 1


def encode(scorer: Scorer, piece: Untyped, row_id: str | None, scored: Callable[[int, float], None]) -> Encoded:
    """Type the chunk, then score it a slice at a time (so progress moves within a slow model's chunk), as CSV,
    gzipped; ``scored`` is told each slice's rows and input bytes."""
    card = scorer.card
    chunk, seen = piece.typed(keep_invalid=True)
    del piece
    if chunk is None:
        return Encoded(b"", 0, seen)
    names = scorer.parser.names
    per_row = chunk.nbytes / chunk.rows if chunk.rows else 0.0
    parts: list[bytes] = []
    for start in range(0, chunk.rows, SLICE_ROWS):
        n = min(SLICE_ROWS, chunk.rows - start)
        columns = {name: _rows(chunk.columns[name], start, n) for name in names}
        ids = _ids(chunk.columns[row_id], start, n) if row_id else None
        parts.append(csv_bytes(_table(card, ids, scorer.outputs(columns, n))))
        scored(n, n * per_row)
    return Encoded(gzip_member(b"".join(parts)), chunk.rows, seen)


@dataclass
class Encoded:
    """One chunk's output: its gzip member, its rows, and what typing it counted."""

    member: bytes
    rows: int
    seen: ScanCounts


def header_member(card: ModelCard, row_id: str | None) -> bytes:
    """The output's header line, as a gzip member of its own."""
    return gzip_member(_header(card, row_id).encode())


def _header(card: ModelCard, row_id: str | None) -> str:
    first = [row_id] if row_id else []
    if card.model_type == ModelType.BINARY:
        columns = ["bestAnswer", "score"]
    elif card.model_type == ModelType.MULTICLASS:
        columns = list(card.classes or [])
    else:
        columns = ["score"]
    return pd.DataFrame(columns=[*first, *columns]).to_csv(index=False)


def _table(card: ModelCard, row_ids: pa.Array | None, output: np.ndarray) -> pa.Table:
    """Amazon ML's layout: BINARY bestAnswer,score; MULTICLASS a score per class; REGRESSION score; after the row id
    when there is one. Scores keep every digit (the shortest text that reads back as the same double)."""
    columns: dict[str, pa.Array] = {}
    if row_ids is not None:
        columns["row_id"] = row_ids
    if card.model_type == ModelType.BINARY:
        positive = output >= threshold_or_default(card.score_threshold)
        columns["bestAnswer"] = pa.DictionaryArray.from_arrays(
            pa.array(positive.astype(np.int8)), pa.array(card.classes or ["0", "1"])
        )
        columns["score"] = pa.array(output)
    elif card.model_type == ModelType.MULTICLASS:
        for i in range(output.shape[1]):
            columns[f"c{i}"] = pa.array(np.ascontiguousarray(output[:, i]))
    else:
        columns["score"] = pa.array(output)
    return pa.table(columns)


def csv_bytes(table: pa.Table) -> bytes:
    """The rows as CSV without a header, quoting only where a value needs it."""
    sink = pa.BufferOutputStream()
    try:
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:  # a value holds a comma, a quote or a line break
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def gzip_member(data: bytes) -> bytes:
    """``data`` as one whole gzip member (header, deflate stream, trailer)."""
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _rows(column: Any, start: int, n: int) -> Any:
    """Rows ``start`` to ``start + n`` of a numpy or arrow column, without a copy."""
    return column[start : start + n] if isinstance(column, np.ndarray) else column.slice(start, n)


def _ids(column: Any, start: int, n: int) -> pa.Array:
    """The row id column's slice as arrow strings (a number read as NUMERIC is written as the file had it)."""
    ids = _rows(column, start, n)
    return pa.array(ids) if isinstance(ids, np.ndarray) else ids


def result_uri(prefix: str, batch_id: str, input_uri: str) -> str:
    """Where the result of one input file goes under the job's ``prefix``: ``result/<id>-<input name>.gz`` (an
    input's own .gz dropped, so it is never doubled)."""
    name = PurePosixPath(input_uri.rstrip("/")).name
    name = name[:-3] if name.endswith(".gz") else name
    return f"{result_prefix(prefix, batch_id)}{name}.gz"


def result_prefix(prefix: str, batch_id: str) -> str:
    """What the names of one job's results, and only that job's, begin with."""
    return f"{prefix.rstrip('/')}/result/{batch_id}-"
