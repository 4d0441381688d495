"""Streaming CSV reading: files → chunks of raw string tokens with their line numbers, never a whole file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mlsvc.errors import ErrorCode, MlsvcError

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
_HEAD_BYTES = 256 * 1024


@dataclass
class RawChunk:
    """Rows of one file as strings (blank is ""), and the 1-based line number of each row."""

    source: str
    frame: pd.DataFrame
    line_numbers: list[int]


@dataclass
class BadRows:
    """Rows the parser could not split into the header's columns (ragged rows)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, source: str, line: int | None, expected: int, actual: int) -> None:
        self.count += 1
        if len(self.examples) < 5:
            where = f"{source} line {line}" if line is not None else source
            self.examples.append(f"{where}: {actual} fields where the header has {expected}")


def peek_rows(head: bytes, limit: int = 50) -> list[list[str]]:
    """The first rows of a file, parsed with RFC 4180 quoting, for header detection and naming."""
    text = _decode(head, "the start of the file", partial=True)
    lines = text.splitlines(keepends=True)
    if len(head) >= _HEAD_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut off mid-record
    return [row for row in csv.reader(lines[: limit + 1]) if row][:limit]


def _decode(data: bytes, where: str, partial: bool = False) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if partial and exc.start >= len(data) - 4:
            return data[: exc.start].decode("utf-8-sig")
        line = data[: exc.start].count(b"\n") + 1
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{where} is not valid UTF-8 (byte {exc.start}, line {line}); save the file as UTF-8 and try again",
        ) from exc


class _Prefixed(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``body``: lets us peek at an unrewindable S3 stream."""

    def __init__(self, head: bytes, body: BinaryIO) -> None:
        self._head = memoryview(head)
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_with_head(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    """Read the first bytes of a stream and give back an equivalent stream that starts over."""
    head = stream.read(_HEAD_BYTES)
    return head, io.BufferedReader(_Prefixed(head, stream), buffer_size=1024 * 1024)


def header_names(first_row: list[str]) -> list[str]:
    """Column names from a header row; blanks and repeats are made unique so every column can be named."""
    names: list[str] = []
    for i, raw in enumerate(first_row, start=1):
        name = raw.strip() or f"col_{i}"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def iter_chunks(
    source: str,
    stream: BinaryIO,
    names: list[str],
    *,
    has_header: bool,
    bad_rows: BadRows,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[RawChunk]:
    """Stream a CSV file as chunks of string columns named ``names``; ragged rows are counted in ``bad_rows``."""
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1 if has_header else 0,
        block_size=max(chunk_bytes, 2 * max_record_bytes),
        use_threads=False,
    )

    def on_invalid(row: pacsv.InvalidRow) -> str:
        line = None if row.number is None else row.number + (1 if has_header else 0)
        bad_rows.add(source, line, row.expected_columns, row.actual_columns)
        return "skip"

    parse_options = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid)
    convert_options = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    line = 2 if has_header else 1
    try:
        reader = pacsv.open_csv(stream, read_options=read_options, parse_options=parse_options,
                                convert_options=convert_options)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            _refuse_oversized(source, batch, line, max_record_bytes)
            frame = batch.to_pandas(types_mapper=None)
            frame = frame.astype(object)
            numbers = list(range(line, line + batch.num_rows))
            line += batch.num_rows
            yield RawChunk(source, frame, numbers)
    except pa.ArrowInvalid as exc:
        raise _translate(source, exc, max_record_bytes) from exc


def _refuse_oversized(source: str, batch: pa.RecordBatch, first_line: int, limit: int) -> None:
    """A record over the limit is refused: one giant field is usually a runaway quote, never a real row."""
    sizes = None
    for column in batch.columns:
        size = pc.binary_length(column)
        sizes = size if sizes is None else pc.add(sizes, size)
    if sizes is None or pc.max(sizes).as_py() <= limit:
        return
    index = pc.index(pc.greater(sizes, limit), True).as_py()
    raise MlsvcError(ErrorCode.INVALID_DATA,
                     f"{source} line {first_line + index} holds a record of {sizes[index].as_py()} bytes, larger "
                     f"than the limit of {limit} bytes (MLSVC_MAX_RECORD_BYTES); check the file's quoting")


def _translate(source: str, exc: pa.ArrowInvalid, max_record_bytes: int) -> MlsvcError:
    text = str(exc)
    if "UTF8" in text or "utf8" in text.lower():
        return MlsvcError(ErrorCode.INVALID_DATA,
                          f"{source} is not valid UTF-8 ({text}); save the file as UTF-8 and try again")
    if "straddling" in text or "block size" in text:
        return MlsvcError(ErrorCode.INVALID_DATA,
                          f"{source} has a record larger than the limit of {max_record_bytes} bytes "
                          "(or an unclosed quote that runs on); check the file's quoting")
    return MlsvcError(ErrorCode.INVALID_DATA, f"{source} could not be parsed as CSV: {text}")
