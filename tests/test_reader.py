"""The streaming CSV reader: RFC 4180 quoting, headers, BOM, blank lines, ragged rows and their line numbers."""

from __future__ import annotations

import csv
import io
import random

import pytest

from mlsvc.datasources.reader import BadRows, RawChunk, header_names, iter_chunks, open_with_head, peek_rows
from mlsvc.errors import ErrorCode, MlsvcError


def read(data: bytes, names: list[str], *, header: bool = True, chunk_bytes: int | None = None,
         max_record_bytes: int = 1024 * 1024) -> tuple[list[RawChunk], BadRows]:
    bad = BadRows()
    extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    chunks = list(iter_chunks("s3://b/f.csv", io.BytesIO(data), names, has_header=header, bad_rows=bad,
                              max_record_bytes=max_record_bytes, **extra))
    return chunks, bad


def rows_of(chunks: list[RawChunk]) -> list[tuple[int, int, list[str]]]:
    """(line, ordinal, values) of every row, in order."""
    return [(int(line), int(ordinal), list(values))
            for c in chunks
            for line, ordinal, values in zip(c.line_numbers, c.ordinals, c.frame.itertuples(index=False), strict=True)]


def test_rfc4180_quoting_with_embedded_separators_quotes_and_line_breaks() -> None:
    data = (b'id,text,n\r\n'
            b'1,"a, b",10\r\n'
            b'2,"she said ""hi""",20\r\n'
            b'3,"two\r\nlines",30\r\n'
            b'4,"three\nlines\nhere",40\n'
            b'5,plain,50\r\n')
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
    data = (b"a,b,c\n"          # 1
            b"1,2,3\n"          # 2
            b"4,5\n"            # 3  too few
            b'"x\ny",1,2\n'     # 4-5
            b"\n"               # 6  blank
            b"6,7,8,9\n"        # 7  too many
            b"10,11,12\n"       # 8
            b"13\n")            # 9  too few, last line
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
    data = b"a,b\n1,2\n3,\"" + b"x" * 500 + b"\"\n5,6\n"
    with pytest.raises(MlsvcError) as info:
        read(data, ["a", "b"], max_record_bytes=100)
    assert info.value.code == ErrorCode.INVALID_DATA
    assert "line 3" in info.value.message and "MLSVC_MAX_RECORD_BYTES" in info.value.message
    assert "s3://b/f.csv" in info.value.message


def test_an_unclosed_quote_that_runs_on_is_refused() -> None:
    data = b"a,b\n1,2\n3,\"oops\n" + b"4,5\n" * 100
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


def test_header_names_are_stripped_unique_and_never_blank() -> None:
    assert header_names([" id ", "x", "x", "", "x"]) == ["id", "x", "x_2", "col_4", "x_3"]
