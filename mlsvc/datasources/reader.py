"""Streaming CSV reading: files → chunks of raw string tokens with their line numbers, never a whole file."""

from __future__ import annotations

import atexit
import csv
import heapq
import io
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mlsvc.errors import ErrorCode, MlsvcError

# Chunks of a few MB keep memory low (the reader holds three or four) and cost little: every later step works
# on whole arrow columns, so a chunk's fixed cost is a few dozen kernel calls.
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
_HEAD_BYTES = 256 * 1024
_READ_PIECE = 1024 * 1024  # the most the reading thread asks of the source at once
_UTF8_HINT = 'save the file as UTF-8 (e.g. "CSV UTF-8" in a spreadsheet\'s Save As) and try again'


@dataclass
class RawChunk:
    """Rows of one file as strings (blank is ""), with where each row is.

    ``batch`` holds one arrow string column per name, never null. ``line_numbers`` are 1-based physical lines
    of the file (the header is line 1; a record whose quoted values hold line breaks is numbered by its first
    line). ``ordinals`` are 0-based positions among the file's data rows, counting rows with the wrong number
    of fields but not blank lines: a split by position places every row the same way however the file was
    cut into chunks.
    """

    source: str
    batch: pa.RecordBatch
    line_numbers: np.ndarray
    ordinals: np.ndarray
    nbytes: int = 0  # about the bytes of the file the chunk's rows were read from (for progress)

    def __len__(self) -> int:
        return self.batch.num_rows

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame of ``str`` objects, made on demand (the scan itself stays in arrow)."""
        return self.batch.to_pandas().astype(object)


BAD_ROW_EXAMPLES = 5  # ragged rows described by line, of however many there are


@dataclass
class BadRows:
    """Rows the parser could not split into the header's columns (ragged rows)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def extend(self, other: BadRows) -> None:
        """Add the ragged rows of the next part of the data."""
        self.count += other.count
        self.examples.extend(other.examples[: max(0, BAD_ROW_EXAMPLES - len(self.examples))])
        self.lines.extend(other.lines[: max(0, BAD_ROW_EXAMPLES - len(self.lines))])

    def add(self, source: str, line: int | None, expected: int, actual: int) -> None:
        self.count += 1
        if len(self.examples) < BAD_ROW_EXAMPLES:
            where = f"{source} line {line}" if line is not None else source
            self.examples.append(f"{where}: {actual} fields where the header has {expected}")
            if line is not None:
                self.lines.append(line)


def peek_rows(head: bytes, limit: int = 50, source: str = "the file") -> list[list[str]]:
    """The first rows of a file, parsed with RFC 4180 quoting, for header detection and naming.

    Blank lines (and rows of only separators) are skipped, as ``iter_chunks`` skips them. When ``head`` is only
    the start of a longer file, the line it cuts through is left out.
    """
    partial = len(head) >= _HEAD_BYTES
    text = _decode(head, source, partial=partial)
    if partial:
        cut = text.rfind("\n")
        if cut < 0:
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"the first line of {source} is longer than {_HEAD_BYTES // 1024} KB; check that it is "
                "a CSV file with one record per line",
                {"uri": source},
            )
        text = text[: cut + 1]
    reader = _csv_reader(text)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
            if len(rows) > limit:
                break
    except csv.Error as exc:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{source} line {reader.line_num} cannot be read as CSV ({exc}); check that it is a "
            "text file and its quoting",
            {"uri": source},
        ) from exc
    if partial and len(rows) <= limit and text.count('"') % 2:
        rows.pop()  # the cut falls inside a quoted value: the last record continues past the head
    return rows[:limit]


def _csv_reader(text: str) -> Any:
    # The text is parsed whole, so let one value fill it (the csv module's default stops at 128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    return csv.reader(io.StringIO(text, newline=""))


def unfinished_record(head: bytes) -> int | None:
    """When ``head`` is the start of a longer file (it is ``_HEAD_BYTES`` or more) and fewer than two records end
    in it, so that a sample of it shows no data row: the line where the record it cuts through begins. None
    when two records end in it, or it is the whole file."""
    if len(head) < _HEAD_BYTES:
        return None
    cut = head.rfind(b"\n")
    text = head[: cut + 1].decode("utf-8-sig", "replace")
    reader = _csv_reader(text)
    starts: list[int] = []
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if any(cell.strip() for cell in row):
                starts.append(start)
            if len(starts) > 2:
                return None
    except csv.Error:
        return None  # peek_rows says what is wrong with it
    if text.count('"') % 2 and starts:
        return starts[-1]  # the cut falls inside this record's quoted value
    if len(starts) >= 2:
        return None
    return reader.line_num + 1


def head_through_first_row(reopen: Callable[[], BinaryIO], head: bytes, source: str, max_record_bytes: int) -> bytes:
    """``head``, or when it cuts through the header or the first data row (see ``unfinished_record``) the
    file's first bytes again, through the end of that record if it is within the record-size limit. Raises
    the record-size error when it is not, rather than let a sample without it say the file has no rows."""
    line = unfinished_record(head)
    if line is None:
        return head
    wanted = len(head) + max_record_bytes + 1
    with reopen() as stream:
        longer = stream.read(wanted)
    if len(longer) < wanted:  # the whole file: its last record is whole too
        return longer if longer.endswith(b"\n") else longer + b"\n"
    if unfinished_record(longer) is None:
        return longer
    raise record_too_large(source, line, max_record_bytes)


def record_too_large(source: str, line: int, limit: int, size: int | None = None) -> MlsvcError:
    """The error for a record over the record-size limit: where it is, the limit and its setting, what to do."""
    measured = f"a record of {size} bytes," if size is not None else "a record"
    return MlsvcError(
        ErrorCode.INVALID_DATA,
        f"{source} line {line} holds {measured} larger than the limit of {limit} bytes (MLSVC_MAX_RECORD_BYTES); "
        "check the file's quoting (an unclosed quote runs on to the next one), or raise MLSVC_MAX_RECORD_BYTES "
        "if such records are real",
        {"uri": source, "line": line, "limit": limit},
    )


def _decode(data: bytes, source: str, partial: bool = False) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if partial and exc.start >= len(data) - 4:
            return data[: exc.start].decode("utf-8-sig")
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line_end = data.find(b"\n", exc.start)
        raise not_utf8(
            source, data[: exc.start].count(b"\n") + 1, exc, data[line_start : line_end if line_end >= 0 else len(data)]
        ) from exc


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or many control characters: what binary formats hold and text does not."""
    if b"\x00" in data:
        return True
    controls = sum(1 for byte in data if byte < 0x20 and byte not in b"\t\r\n\x0c")
    return controls > max(2, len(data) // 20)


def not_utf8(
    source: str, line: int | None, exc: UnicodeDecodeError, context: bytes, column: str | None = None
) -> MlsvcError:
    """The error for bytes that are not UTF-8: where they are, what they are and what to do."""
    bad = exc.object[exc.start : exc.end]
    where = f"line {line}" if line is not None else "a line"
    if column is not None:
        where += f", column '{column}',"
    if looks_binary(context):
        # A binary file's bytes are not shown: they mean nothing to a reader, and could be anyone's secrets.
        return MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{source} is a binary file, not CSV text ({where} holds bytes that are not text); point at a CSV file",
            {"uri": source, "line": line},
        )
    shown = context[:80].decode("utf-8", "replace").strip()
    guess = ""
    try:
        guess = f"; read as Windows-1252 it would be {bad.decode('cp1252')!r}, so the file is probably in a legacy "
        guess += "encoding like that one"
    except UnicodeDecodeError:
        pass
    return MlsvcError(
        ErrorCode.INVALID_DATA,
        f"{source} is not valid UTF-8 text: {where} holds the byte {bad.hex(' ')} in {shown!r}{guess}; {_UTF8_HINT}",
        {"uri": source, "line": line},
    )


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
        return _read_into(self._body, buffer)


def _read_into(stream: BinaryIO, buffer: bytearray | memoryview) -> int:
    """``stream.readinto(buffer)`` where the stream has it (no copy), else a read and a copy."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return int(readinto(buffer) or 0)
    data = stream.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


class _Terminated(io.RawIOBase):
    """The stream, with a line break added at the end if its last line has none: so a header-only file
    without one still has a whole header line, and the last record is always complete."""

    def __init__(self, body: BinaryIO) -> None:
        self._body = body
        self._last = b"\n"  # an empty stream stays empty
        self._done = False
        self.tail = b""  # the last bytes of the stream, to tell a closed final quote from a runaway one

    def ends_with_quote(self) -> bool:
        return self.tail.rstrip(b"\r\n \t").endswith(b'"')

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        count = _read_into(self._body, buffer)
        if count:
            data = memoryview(buffer)[max(0, count - 64) : count].tobytes()
            self._last = data[-1:]
            self.tail = (self.tail + data)[-64:]
            return count
        self._done = True
        if self._last in (b"\n", b"\r"):
            return 0
        buffer[:1] = b"\n"
        return 1


class _ReadAhead:
    """The stream pyarrow's CSV reader pulls its blocks from, holding its reading thread at most ``ahead``
    blocks beyond what the parser needs for the batch the consumer asks for next.

    Left alone, pyarrow's background thread queues up to 32 blocks, so a file of a few hundred MB is read whole
    before its first batch is used. Here the consumer reports every batch it takes (``took``); producing the
    next batch needs the block after it (a record may straddle two), so the reader may have made at most
    ``taken + 2 + ahead`` reads: with ``ahead`` 0, two blocks wait while the consumer works on a batch, and
    pyarrow parses the next batch meanwhile. Should pyarrow ever need more than that, a consumer that has waited
    for a batch longer than ``patience`` seconds lets reads through, so the bound can never deadlock.
    """

    def __init__(self, stream: BinaryIO, ahead: int = 0, patience: float = 1.0) -> None:
        self._stream = stream
        self._limit = 1 + ahead
        self._patience = patience
        self._reads = 0
        self._taken = 0
        self._waiting_since: float | None = None
        self._closed = False
        self._condition = threading.Condition()
        _OPEN.add(self)

    closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.read_buffer(size).to_pybytes() if size >= 0 else self._stream.read()

    def read_buffer(self, size: int) -> pa.Buffer:
        """The next block (pyarrow asks for one this way when it can). It is read into a buffer of arrow's
        own memory pool, a piece at a time, so no block-sized Python object is made in the reading thread."""
        with self._condition:
            while not self._closed and self._reads > self._taken + self._limit and not self._stalled():
                self._condition.wait(0.1)
            if self._closed:
                return pa.allocate_buffer(0)
            self._reads += 1
        buffer = pa.allocate_buffer(size, memory_pool=reading_pool(), resizable=True)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            count = _read_into(self._stream, view[filled : min(size, filled + _READ_PIECE)])
            if not count:
                break
            filled += count
        view.release()
        buffer.resize(filled)
        return buffer

    def _stalled(self) -> bool:
        return self._waiting_since is not None and time.monotonic() - self._waiting_since > self._patience

    def waiting(self) -> None:
        """The consumer is about to wait for the next batch."""
        with self._condition:
            self._waiting_since = time.monotonic()

    def took(self, batch: bool = True) -> None:
        """The consumer has what it waited for; if that is a batch, one more block may be read."""
        with self._condition:
            self._waiting_since = None
            self._taken += batch
            self._condition.notify_all()

    def close(self) -> None:
        """Release the reading thread for good (the consumer stopped early, or is done): reads return nothing."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()


_OPEN: weakref.WeakSet[_ReadAhead] = weakref.WeakSet()


@atexit.register
def _release_readers() -> None:
    """A reader left unfinished at exit has pyarrow's thread waiting in ``read_buffer``, in Python: were it to
    wake once the interpreter is finalising, the process would abort. So it is released now, and given a
    moment (the GIL, while this thread sleeps) to return to pyarrow, which stops at the end of the stream."""
    gates = list(_OPEN)
    for gate in gates:
        gate.close()
    if gates:
        time.sleep(0.2)


_POOL: list[pa.MemoryPool] = []


# How long jemalloc keeps the pages of freed blocks before handing them back: at 0 every block is faulted in
# afresh (a third of the reader's CPU, 680 against 460 ns a row); a quarter of a second bounds what it keeps to
# about that long's worth of blocks.
READING_DECAY_MS = 250


def reading_pool() -> pa.MemoryPool:
    """Where the reader's blocks and parsed batches live: memory that comes and goes once a chunk, megabytes at
    a time. Arrow's default allocator (mimalloc) keeps such pages for reuse, and a scan's RSS then grows tens of
    MB past what it holds; jemalloc, told to return freed pages after ``READING_DECAY_MS``, does not. Arrow's
    default pool where jemalloc is not built in."""
    if not _POOL:
        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(READING_DECAY_MS)
        except NotImplementedError:
            pool = pa.default_memory_pool()
        _POOL.append(pool)
    return _POOL[0]


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


class _Places:
    """Turns the parser's record numbers into physical line numbers and data-row ordinals.

    pyarrow numbers every record of the file from 1, the header included, and (since blank lines are not
    ignored) blank lines too; it does not count the extra lines of quoted values holding line breaks, and it
    reports rows with the wrong number of fields to a callback, possibly before the batch that precedes them.
    So rejected rows wait here by number until the batches around them arrive.
    """

    def __init__(self, source: str, bad_rows: BadRows, first_record: int) -> None:
        self.source = source
        self.bad_rows = bad_rows
        self.next_record = first_record
        self.extra_lines = 0  # physical lines so far beyond one per record
        self.ordinal = 0
        self._waiting: list[int] = []
        self._rejected: dict[int, tuple[int, int, int, bool]] = {}  # number → expected, actual, breaks, blank
        self._highest_rejected: tuple[int, str] = (0, "")
        self.last_record: tuple[int, str] | None = None  # the line and last value (or text) of the last record

    def reject(self, row: pacsv.InvalidRow) -> str:
        blank = not row.text.strip()
        if row.number is None:  # never with use_threads=False, but never lose a row over it
            if not blank:
                self.bad_rows.add(self.source, None, row.expected_columns, row.actual_columns)
            return "skip"
        heapq.heappush(self._waiting, row.number)
        if row.number > self._highest_rejected[0]:
            self._highest_rejected = (row.number, row.text)
        self._rejected[row.number] = (row.expected_columns, row.actual_columns, _line_breaks(row.text), blank)
        return "skip"

    def place(
        self, breaks: np.ndarray, blank: np.ndarray, last_value: str = "", drain: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lines and ordinals of a batch's rows (given each row's inner line breaks and whether it is blank);
        the rejected rows among and before them are counted in ``bad_rows`` with their lines. ``drain`` also
        takes the rejected rows that follow (at the end of the file)."""
        start = end = self.next_record
        end += len(breaks)
        rejected: list[int] = []
        while self._waiting and (self._waiting[0] < end or (drain and self._waiting[0] == end)):
            rejected.append(heapq.heappop(self._waiting))
            end += 1
        span = end - start
        is_rejected = np.zeros(span, dtype=bool)
        is_rejected[np.asarray(rejected, dtype=np.int64) - start] = True
        all_breaks = np.zeros(span, dtype=np.int64)
        all_blank = np.zeros(span, dtype=bool)
        all_breaks[~is_rejected] = breaks
        all_blank[~is_rejected] = blank
        infos = [self._rejected.pop(number) for number in rejected]
        for number, (_, _, inner, empty) in zip(rejected, infos, strict=True):
            all_breaks[number - start] = inner
            all_blank[number - start] = empty
        lines = np.arange(start, end, dtype=np.int64) + self.extra_lines + _exclusive_cumsum(all_breaks)
        counted = ~all_blank
        ordinals = self.ordinal + _exclusive_cumsum(counted.astype(np.int64))
        for number, (expected, actual, _, empty) in zip(rejected, infos, strict=True):
            if not empty:
                self.bad_rows.add(self.source, int(lines[number - start]), expected, actual)
        if span:
            last_text = self._highest_rejected[1] if is_rejected[-1] else last_value
            self.last_record = (int(lines[-1]), last_text)
        self.extra_lines += int(all_breaks.sum())
        self.ordinal += int(counted.sum())
        self.next_record = end
        return lines[~is_rejected], ordinals[~is_rejected]

    def next_line(self) -> int:
        """The line of the next record not yet placed (approximate while rejected rows wait)."""
        return self.next_record + self.extra_lines

    def finish(self) -> None:
        """Place the rejected rows after the last batch."""
        if self._waiting:
            self.place(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), drain=True)
        while self._waiting:  # not contiguous: impossible by construction, but count every row regardless
            number = heapq.heappop(self._waiting)
            expected, actual, _, empty = self._rejected.pop(number)
            if not empty:
                self.bad_rows.add(self.source, None, expected, actual)


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(values[:-1], out=out[1:])
    return out


def _line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


@dataclass
class _ColumnFacts:
    """What one pass over a column's bytes tells: its offsets, each value's line breaks, and if it is all ASCII."""

    offsets: np.ndarray
    breaks: np.ndarray | None
    ascii: bool


def _column_facts(column: pa.Array) -> _ColumnFacts:
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    data = column.buffers()[2]
    raw = bytes(memoryview(data)[offsets[0] : offsets[-1]]) if data is not None else b""
    breaks = None
    if b"\n" in raw or b"\r" in raw:  # memchr-fast: the usual case ends here
        counts = pc.add(pc.count_substring(column, "\n"), pc.count_substring(column, "\r"))
        counts = pc.subtract(counts, pc.count_substring(column, "\r\n"))
        breaks = np.asarray(pc.fill_null(counts, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return _ColumnFacts(offsets, breaks, raw.isascii())


def iter_chunks(
    source: str,
    stream: BinaryIO,
    names: list[str],
    *,
    has_header: bool,
    bad_rows: BadRows,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    first_line: int | None = None,
) -> Iterator[RawChunk]:
    """Stream a CSV file as chunks of string columns named ``names``; ragged rows are counted in ``bad_rows``.
    ``first_line``: the file's line number of the stream's first record, when the stream is a partition of it
    (its line numbers then run on from there; otherwise 1, or 2 after a header).

    Blank lines are skipped (as are rows of only separators, which hold no value either), never counted.
    """
    # One block a chunk: pyarrow parses the batch after the one handed out while the consumer works on it (in
    # its reading thread), so blocks made of several batches would be parsed in the consumer's time.
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1 if has_header else 0,
        block_size=max(chunk_bytes, 2 * max_record_bytes),
        use_threads=False,  # in order, and with the record numbers of rejected rows
    )
    places = _Places(source, bad_rows, first_record=2 if has_header else 1)
    if first_line is not None:
        places.extra_lines = first_line - places.next_record
    parse_options = pacsv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=places.reject
    )
    # Read as bytes, then checked as UTF-8 column by column, so a bad byte can be placed by line and column.
    convert_options = pacsv.ConvertOptions(
        column_types={n: pa.binary() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    terminated = _Terminated(stream)
    stream = io.BufferedReader(terminated, buffer_size=1024 * 1024)
    if not stream.peek(1):
        return  # an empty file has no rows (pyarrow would call it an error)
    gate = _ReadAhead(stream)
    try:
        gate.waiting()
        reader = pacsv.open_csv(
            gate,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
            memory_pool=reading_pool(),
        )
        gate.took(batch=False)  # open_csv has read the first block to look at it; its batch is still to come
        batches = iter(reader)
        while True:
            gate.waiting()
            batch = next(batches, None)
            gate.took()
            if batch is None:
                break
            chunk = _chunk(source, batch, names, places, max_record_bytes)
            del batch  # only the chunk's own columns stay alive while the consumer works
            if chunk is not None:
                yield chunk
            del chunk
        places.finish()
    except pa.ArrowException as exc:  # whatever the parser rejects is about the data, not a bug to hide
        raise _translate(source, exc, max_record_bytes, places.next_line()) from exc
    finally:
        gate.close()
    _refuse_runaway_quote(source, places.last_record, terminated.ends_with_quote())


def _chunk(
    source: str, batch: pa.RecordBatch, names: list[str], places: _Places, max_record_bytes: int
) -> RawChunk | None:
    """One parsed batch as a chunk of text columns with the line and ordinal of each row; None if all blank."""
    if batch.num_rows == 0:
        return None
    columns = list(batch.columns)
    rows = batch.num_rows
    facts = [_column_facts(column) for column in columns]
    ends = np.zeros(rows + 1, dtype=np.int64)  # summed offsets: a row's size is the step from its start to its end
    breaks = np.zeros(rows, dtype=np.int64)
    for fact in facts:
        ends += fact.offsets
        if fact.breaks is not None:
            breaks += fact.breaks
    sizes = np.diff(ends)
    blank = sizes == 0
    last_value = columns[-1][rows - 1].as_py().decode("utf-8", "replace")
    lines, ordinals = places.place(breaks, blank, last_value)
    _refuse_oversized(source, sizes, lines, max_record_bytes)
    texts = pa.RecordBatch.from_arrays(
        [
            column.view(pa.string()) if fact.ascii else _as_text(source, column, name, lines)
            for column, fact, name in zip(columns, facts, names, strict=True)
        ],
        names=names,
    )
    if blank.any():
        keep = ~blank
        texts, lines, ordinals = texts.filter(pa.array(keep)), lines[keep], ordinals[keep]
    nbytes = int(ends[-1] - ends[0]) + rows * len(names)  # the values and a separator or line break after each
    return RawChunk(source, texts, lines, ordinals, nbytes) if texts.num_rows else None


def _refuse_runaway_quote(source: str, last_record: tuple[int, str] | None, ends_with_quote: bool) -> None:
    """A quote opened and never closed swallows the rest of the file into the last record's last value, which
    then holds line breaks although the file does not end with a closing quote."""
    if last_record is None or ends_with_quote:
        return
    line, text = last_record
    if "\n" in text or "\r" in text:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{source} line {line} opens a quoted value that is never closed: it runs to the end of the file "
            f'(it begins {text[:30]!r}); check the file\'s quoting (a quote inside a value is written twice: "")',
            {"uri": source, "line": line},
        )


def _as_text(source: str, column: pa.Array, name: str, lines: np.ndarray) -> pa.Array:
    """Bytes that are not all ASCII, checked as UTF-8 (ASCII is UTF-8 as it stands)."""
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowInvalid:
        for index, value in enumerate(column.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(source, int(lines[index]), exc, value, name) from None
        raise


def _refuse_oversized(source: str, sizes: np.ndarray, lines: np.ndarray, limit: int) -> None:
    """A record over the limit is refused: one giant field is usually a runaway quote, never a real row."""
    if not len(sizes) or sizes.max() <= limit:
        return
    index = int(np.argmax(sizes > limit))
    raise record_too_large(source, int(lines[index]), limit, int(sizes[index]))


def _translate(source: str, exc: pa.ArrowException, max_record_bytes: int, near_line: int) -> MlsvcError:
    # Arrow quotes the row it choked on; a binary file's row is not shown (see looks_binary).
    text = str(exc)
    if looks_binary(text.encode("utf-8", "replace")):
        text = "it holds binary content, not CSV text"
    if "UTF8" in text or "utf8" in text.lower():
        return MlsvcError(
            ErrorCode.INVALID_DATA, f"{source} is not valid UTF-8 text ({text}); {_UTF8_HINT}", {"uri": source}
        )
    if "straddling" in text or "block size" in text:
        return MlsvcError(
            ErrorCode.INVALID_DATA,
            f"{source} has a record larger than the limit of {max_record_bytes} bytes "
            f"(MLSVC_MAX_RECORD_BYTES) from about line {near_line}: most likely a quote opened there "
            "is never closed, so the value runs on; check the file's quoting, or raise MLSVC_MAX_RECORD_BYTES "
            "if such records are real",
            {"uri": source, "limit": max_record_bytes, "line": near_line},
        )
    return MlsvcError(
        ErrorCode.INVALID_DATA,
        f"{source} could not be parsed as CSV near line {near_line}: {text}; check that it is a CSV text file",
        {"uri": source, "line": near_line},
    )
