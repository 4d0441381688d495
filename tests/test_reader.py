"""The streaming CSV reader and the scan over it: RFC 4180 quoting, headers, BOM, blank lines, ragged rows and
their line numbers, counts across files."""

from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlsvc.datasources.plan import ReadPlan
from mlsvc.datasources.reader import BadRows, RawChunk, header_names, iter_chunks, open_with_head, peek_rows
from mlsvc.datasources.scan import ScanCounts, count_rows, scan
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import RoutingObjectStore
from mlsvc.resources import Attribute, AttributeType, Schema, Splitting


def read(
    data: bytes,
    names: list[str],
    *,
    header: bool = True,
    chunk_bytes: int | None = None,
    max_record_bytes: int = 1024 * 1024,
) -> tuple[list[RawChunk], BadRows]:
    bad = BadRows()
    extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    chunks = list(
        iter_chunks(
            "s3://b/f.csv",
            io.BytesIO(data),
            names,
            has_header=header,
            bad_rows=bad,
            max_record_bytes=max_record_bytes,
            **extra,
        )
    )
    return chunks, bad


def rows_of(chunks: list[RawChunk]) -> list[tuple[int, int, list[str]]]:
    """(line, ordinal, values) of every row, in order."""
    return [
        (int(line), int(ordinal), list(values))
        for c in chunks
        for line, ordinal, values in zip(c.line_numbers, c.ordinals, c.frame.itertuples(index=False), strict=True)
    ]


def test_rfc4180_quoting_with_embedded_separators_quotes_and_line_breaks() -> None:
    data = (
        b"id,text,n\r\n"
        b'1,"a, b",10\r\n'
        b'2,"she said ""hi""",20\r\n'
        b'3,"two\r\nlines",30\r\n'
        b'4,"three\nlines\nhere",40\n'
        b"5,plain,50\r\n"
    )
    chunks, bad = read(data, ["id", "text", "n"])
    assert rows_of(chunks) == [
        (2, 0, ["1", "a, b", "10"]),
        (3, 1, ["2", 'she said "hi"', "20"]),
        (4, 2, ["3", "two\r\nlines", "30"]),
        (6, 3, ["4", "three\nlines\nhere", "40"]),
        (9, 4, ["5", "plain", "50"]),
    ]
    assert bad.count == 0


def test_blank_lines_are_skipped_but_keep_their_line_numbers() -> None:
    data = b"a,b\n\n1,2\n   \n\r\n3,4\n\n\n"
    chunks, bad = read(data, ["a", "b"])
    assert rows_of(chunks) == [(3, 0, ["1", "2"]), (6, 1, ["3", "4"])]
    assert bad.count == 0  # a line of spaces is blank too, not a row with the wrong number of fields


def test_ragged_rows_are_counted_with_the_physical_line_of_each() -> None:
    data = (
        b"a,b,c\n"  # 1
        b"1,2,3\n"  # 2
        b"4,5\n"  # 3  too few
        b'"x\ny",1,2\n'  # 4-5
        b"\n"  # 6  blank
        b"6,7,8,9\n"  # 7  too many
        b"10,11,12\n"  # 8
        b"13\n"
    )  # 9  too few, last line
    chunks, bad = read(data, ["a", "b", "c"])
    assert [(line, values[0]) for line, _, values in rows_of(chunks)] == [(2, "1"), (4, "x\ny"), (8, "10")]
    assert bad.count == 3
    assert bad.lines == [3, 7, 9]
    assert bad.examples[0] == "s3://b/f.csv line 3: 2 fields where the header has 3"
    # Ordinals count ragged rows (a split by position places every data row) but not blank lines.
    assert [ordinal for _, ordinal, _ in rows_of(chunks)] == [0, 2, 4]


def test_headerless_files_number_lines_from_one() -> None:
    chunks, bad = read(b"1,2\n3\n4,5\n", ["a", "b"], header=False)
    assert rows_of(chunks) == [(1, 0, ["1", "2"]), (3, 2, ["4", "5"])]
    assert bad.lines == [2]


def _messy_file(rows: int, seed: int) -> tuple[bytes, list[tuple[int, list[str]]], list[int]]:
    """A CSV with quoted line breaks, blank lines and ragged rows, and the expected rows and bad lines."""
    rng = random.Random(seed)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "note", "value"])
    line = 2
    expected, bad_lines = [], []
    for i in range(rows):
        kind = rng.random()
        if kind < 0.1:
            out.write("\n")
            line += 1
            continue
        if kind < 0.2:
            out.write(f"{i},only two\n")
            bad_lines.append(line)
            line += 1
            continue
        note = rng.choice(["plain", "with, comma", 'with "quotes"', "two\nlines", "a\nb\nc", ""])
        value = str(rng.randint(-5, 5))
        writer.writerow([str(i), note, value])
        expected.append((line, [str(i), note, value]))
        line += 1 + note.count("\n")
    return out.getvalue().encode(), expected, bad_lines


@pytest.mark.parametrize("chunk_bytes", [64, 1000, None])
def test_results_do_not_depend_on_how_the_file_is_cut_into_blocks(chunk_bytes: int | None) -> None:
    data, expected, bad_lines = _messy_file(600, seed=1)
    chunks, bad = read(data, ["id", "note", "value"], chunk_bytes=chunk_bytes, max_record_bytes=30)
    if chunk_bytes == 64:
        assert len(chunks) > 20  # really many blocks, so rejected rows and batches interleave
    got = rows_of(chunks)
    assert [(line, values) for line, _, values in got] == expected
    assert bad.count == len(bad_lines) and bad.lines == bad_lines[:5]
    # Ordinals: every non-blank data row, ragged ones included, in file order.
    all_lines = sorted([line for line, _ in expected] + bad_lines)
    assert [ordinal for _, ordinal, _ in got] == [all_lines.index(line) for line, _ in expected]


def test_a_bom_is_not_part_of_the_first_name_or_value() -> None:
    data = "\ufeffname,score\nAda,1\n".encode()
    assert peek_rows(data) == [["name", "score"], ["Ada", "1"]]
    chunks, _ = read("\ufeffAda,1\n".encode(), ["name", "score"], header=False)
    assert rows_of(chunks) == [(1, 0, ["Ada", "1"])]


@pytest.mark.parametrize("data", [b"", b"a,b\n", b"a,b", b"\n\n", b"a,b\r\n\r\n"])
def test_empty_and_header_only_files_have_no_rows(data: bytes) -> None:
    chunks, bad = read(data, ["a", "b"])
    assert chunks == [] and bad.count == 0


def test_the_last_line_needs_no_line_break() -> None:
    chunks, _ = read(b"a,b\n1,2\n3,4", ["a", "b"])
    assert rows_of(chunks) == [(2, 0, ["1", "2"]), (3, 1, ["3", "4"])]


def test_a_record_over_the_limit_is_refused_with_its_line() -> None:
    data = b'a,b\n1,2\n3,"' + b"x" * 500 + b'"\n5,6\n'
    with pytest.raises(MlsvcError) as info:
        read(data, ["a", "b"], max_record_bytes=100)
    assert info.value.code == ErrorCode.INVALID_DATA
    assert "line 3" in info.value.message and "MLSVC_MAX_RECORD_BYTES" in info.value.message
    assert "s3://b/f.csv" in info.value.message


def test_an_unclosed_quote_that_runs_on_is_refused() -> None:
    data = b'a,b\n1,2\n3,"oops\n' + b"4,5\n" * 100
    with pytest.raises(MlsvcError) as info:
        read(data, ["a", "b"], max_record_bytes=100)
    assert "line 3" in info.value.message and "quot" in info.value.message


def test_an_unclosed_quote_longer_than_a_block_is_placed_near_its_line() -> None:
    data = b"a,b\n" + b"1,2\n" * 30 + b'3,"oops\n' + b"4,5\n" * 100
    with pytest.raises(MlsvcError) as info:
        read(data, ["a", "b"], chunk_bytes=64, max_record_bytes=30)
    assert "about line 32" in info.value.message and "never closed" in info.value.message


def test_bytes_that_are_not_utf8_are_placed_by_line_and_column() -> None:
    data = "a,b\n1,ok\n2,caf\u00e9\n".encode("latin-1")
    with pytest.raises(MlsvcError) as info:
        read(data, ["a", "b"])
    message = info.value.message
    assert info.value.code == ErrorCode.INVALID_DATA
    assert "s3://b/f.csv" in message and "line 3" in message and "column 'b'" in message
    assert "e9" in message and "UTF-8" in message and "'é'" in message
    with pytest.raises(MlsvcError) as head:
        peek_rows(data, source="s3://b/f.csv")
    assert "s3://b/f.csv" in head.value.message and "line 3" in head.value.message


def test_peek_rows_parses_quoted_line_breaks_and_skips_blank_lines() -> None:
    data = b'a,b\n\n"x\ny",1\n2,"3"\n'
    assert peek_rows(data) == [["a", "b"], ["x\ny", "1"], ["2", "3"]]
    assert peek_rows(data, limit=2) == [["a", "b"], ["x\ny", "1"]]


def test_peek_rows_drops_a_record_the_head_cuts_through() -> None:
    body = b"a,b\n" + b'1,"x\n' + b"y" * (300 * 1024) + b'"\n'
    head, stream = open_with_head(io.BytesIO(body))
    assert len(head) == 256 * 1024
    assert peek_rows(head) == [["a", "b"]]
    assert stream.read() == body  # the stream starts over


class _CountingStream(io.RawIOBase):
    """A file that counts the bytes taken from it, as an S3 body would be read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._data.readinto(buffer)
        self.taken += count
        return count


def test_the_reader_stays_a_few_blocks_ahead_of_the_rows_handed_out() -> None:
    line = b"%09d,abcdefghijklmnopqrstuvwxyz0123456789\n"
    width = len(line % 0)
    rows = 500_000  # 25 MB; pyarrow alone queues up to 32 blocks (8 MB here) ahead of the consumer
    data = b"id,text\n" + b"".join(line % i for i in range(rows))
    stream = _CountingStream(data)
    block = 256 * 1024
    handed_out, leads = 0, []
    for chunk in iter_chunks(
        "s3://b/f.csv",
        stream,
        ["id", "text"],
        has_header=True,
        bad_rows=BadRows(),
        chunk_bytes=block,
        max_record_bytes=1000,
    ):
        handed_out += len(chunk)
        leads.append(stream.taken - handed_out * width)
    assert handed_out == rows and len(leads) > 50
    # Two blocks wait while a chunk is worked on, plus the 1 MiB buffer in front of the parser.
    assert max(leads) <= 3 * block + 1024 * 1024 + 64 * 1024


def test_a_reader_left_early_stops_reading() -> None:
    data = b"a,b\n" + b"1,2\n" * 2_000_000
    stream = _CountingStream(data)
    chunks = iter_chunks(
        "s3://b/f.csv",
        stream,
        ["a", "b"],
        has_header=True,
        bad_rows=BadRows(),
        chunk_bytes=64 * 1024,
        max_record_bytes=1000,
    )
    next(chunks)
    chunks.close()
    taken = stream.taken
    assert taken < 2 * 1024 * 1024
    time.sleep(0.3)
    assert stream.taken == taken


def test_header_names_are_stripped_unique_and_never_blank() -> None:
    assert header_names([" id ", "x", "x", "", "x"]) == ["id", "x", "x_2", "col_4", "x_3"]


def _two_files(tmp_path: Path) -> tuple[RoutingObjectStore, ReadPlan]:
    """Two files of one datasource, their columns in other orders, with invalid values and a ragged row."""
    first = tmp_path / "a.csv"
    first.write_text("id,n\nr1,1\nr2,x\nr3\nr4,4\n")  # an invalid value on line 3, a ragged row on line 4
    second = tmp_path / "b.csv"
    second.write_text("n,id\n\n5,r5\noops,r6\n7,r7\n")  # other column order, a blank line, invalid on line 4
    storage = RoutingObjectStore()
    files = storage.list_data_files(str(tmp_path))
    schema = Schema(
        attributes=[
            Attribute(attributeName="id", attributeType=AttributeType.CATEGORICAL),
            Attribute(attributeName="n", attributeType=AttributeType.NUMERIC),
        ]
    )
    return storage, ReadPlan(files, {files[0].uri: ["id", "n"], files[1].uri: ["n", "id"]}, schema)


def _scan_two_files(tmp_path: Path, **options: Any) -> tuple[list[pd.DataFrame], ScanCounts]:
    storage, plan = _two_files(tmp_path)
    plan = replace(plan, splitting=options.pop("splitting", None), total_rows=options.pop("total", None))
    counts = ScanCounts()
    chunks = [c.typed for c in scan(storage, plan, counts, **options)]
    return chunks, counts


def test_scan_counts_rows_across_files_and_names_the_file_and_line_of_each_invalid_value(tmp_path: Path) -> None:
    chunks, counts = _scan_two_files(tmp_path)
    kept = pd.concat(chunks)
    assert kept["id"].tolist() == ["r1", "r4", "r5", "r7"] and kept["n"].tolist() == [1.0, 4.0, 5.0, 7.0]
    assert (counts.seen_rows, counts.kept_rows, counts.used_rows, counts.invalid_rows, counts.bad_rows.count) == (
        7,
        6,
        4,
        2,
        1,
    )
    assert counts.invalid_examples["n"] == [
        {"file": str(tmp_path / "a.csv"), "line": 3, "value": "x"},
        {"file": str(tmp_path / "b.csv"), "line": 4, "value": "oops"},
    ]
    message = counts.invalid_message(0.1)
    assert "3 of 7 rows are invalid" in message and "'n' (2 values that are not numbers" in message
    assert f"{tmp_path / 'a.csv'} line 4: 1 fields where the header has 2" in message


def test_scan_places_a_sequential_split_over_all_files_counting_ragged_rows(tmp_path: Path) -> None:
    # 7 data rows (the ragged one included): 0..50 % is rows 0-3, i.e. r1, r2, ragged r3, r4.
    _, counts = _scan_two_files(tmp_path)
    # The counting pass a sequential split needs counts what the scan will see, ragged rows included.
    assert count_rows(*_two_files(tmp_path)) == 7
    assert counts.seen_rows == 7
    chunks, _ = _scan_two_files(tmp_path, splitting=Splitting(percentEnd=50), total=7)
    assert pd.concat(chunks)["id"].tolist() == ["r1", "r4"]
    rest, _ = _scan_two_files(tmp_path, splitting=Splitting(percentEnd=50, complement=True), total=7)
    assert pd.concat(rest)["id"].tolist() == ["r5", "r7"]


def test_scan_can_keep_rows_with_invalid_values_for_readers_that_answer_every_row(tmp_path: Path) -> None:
    chunks, counts = _scan_two_files(tmp_path, keep_invalid=True)
    kept = pd.concat(chunks)
    assert kept["id"].tolist() == ["r1", "r2", "r4", "r5", "r6", "r7"]
    assert np.isnan(kept["n"].tolist()[1]) and counts.invalid_rows == 2 and counts.used_rows == 4


def _settled(path: Path) -> Schema:
    """The schema the datasource job settles for one local file without a schema: inferred from its head."""
    from mlsvc.datasources.job import settle_schema

    objects = RoutingObjectStore()
    return settle_schema(objects, {"data_uri": str(path)}, objects.list_data_files(str(path)))


def test_a_data_row_over_the_record_limit_is_refused_as_too_large_not_as_a_header_only_file(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    with path.open("w") as out:
        out.write("id,note,label\n")
        out.write("1," + "x" * (50 * 1024 * 1024) + ",yes\n")  # one 50 MB row
        out.write("2,short,no\n")
    with pytest.raises(MlsvcError) as info:
        _settled(path)
    message = info.value.message
    assert info.value.code == ErrorCode.INVALID_DATA
    assert f"{path} line 2 holds a record larger than the limit of 1048576 bytes (MLSVC_MAX_RECORD_BYTES)" in message
    assert "raise MLSVC_MAX_RECORD_BYTES" in message and "header" not in message
    assert info.value.details == {"uri": str(path), "line": 2, "limit": 1024 * 1024}


def test_a_first_row_longer_than_the_sampled_head_but_within_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("id,note,label\n" + "1," + "x" * (600 * 1024) + ",yes\n2,short,no\n")
    schema = _settled(path)
    assert [a.attributeName for a in schema.attributes] == ["id", "note", "label"]
    assert schema.dataFileContainsHeader
