"""Cutting one CSV file into byte ranges of whole records, quoted line breaks and doubled quotes honoured."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest

from mlsvc.datasources.partitions import Partition, cut, nominal_ranges, summarise


def _csv(rows: int, seed: int) -> bytes:
    """A header and ``rows`` records whose values hold commas, doubled quotes and line breaks (LF and CRLF)."""
    rng = np.random.default_rng(seed)
    pieces = ["plain", "a,b", 'say ""hi""', "two\nlines", "crlf\r\nbreak", '"', "\n", "", "x" * 50]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "text", "n"])
    for i in range(rows):
        text = "".join(rng.choice(pieces, rng.integers(1, 4)))
        writer.writerow([i, text.replace('""', '"'), int(rng.integers(0, 1000))])
    return out.getvalue().encode()


def _record_starts(data: bytes) -> dict[int, int]:
    """Every offset where a record starts, with its line number (1 is the header's), by one pass from the top."""
    starts, inside, line = {0: 1}, False, 1
    for offset, byte in enumerate(data):
        if byte == ord('"'):
            inside = not inside
        elif byte == ord("\n"):
            line += 1
            if not inside and offset + 1 < len(data):
                starts[offset + 1] = line
    return starts


def _partitions(data: bytes, target: int) -> list[Partition]:
    header_end = data.index(b"\n") + 1
    summaries = [summarise(data[a:b], a) for a, b in nominal_ranges(len(data), header_end, target)]
    return cut(summaries, header_end, 2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [7, 64, 500, 4096, 10**9])
def test_partitions_are_whole_records_that_read_as_the_file_does(seed: int, target: int) -> None:
    data = _csv(300, seed)
    starts = _record_starts(data)
    parts = _partitions(data, target)
    assert parts[0].start == data.index(b"\n") + 1 and parts[-1].end == len(data)
    for before, after in itertools.pairwise(parts):
        assert before.end == after.start > before.start
    for part in parts:
        assert part.start in starts and part.first_line == starts[part.start]
    whole = list(csv.reader(io.StringIO(data.decode(), newline="")))[1:]
    pieces = [row for p in parts for row in csv.reader(io.StringIO(data[p.start : p.end].decode(), newline=""))]
    assert pieces == whole


def test_a_range_inside_one_long_quoted_value_adds_no_partition() -> None:
    data = b'id,text\n1,"' + b"line\n" * 200 + b'"\n2,short\n3,short\n'
    parts = _partitions(data, 64)
    assert len(parts) < len(nominal_ranges(len(data), 8, 64))
    assert data[parts[0].start : parts[0].start + 2] == b"1,"
    assert {data[p.start : p.start + 2] for p in parts[1:]} <= {b"2,", b"3,"}


def test_a_file_of_one_record_or_none_is_one_partition() -> None:
    assert [(p.start, p.end) for p in _partitions(b"id,n\n1,2\n", 3)] == [(5, 9)]
    assert [(p.start, p.end) for p in _partitions(b"id,n\n", 3)] == [(5, 5)]


def test_nominal_ranges_cover_the_data_evenly() -> None:
    assert nominal_ranges(110, 10, 30) == [(10, 35), (35, 60), (60, 85), (85, 110)]
    assert nominal_ranges(10, 10, 30) == [(10, 10)]
