"""Byte ranges of one large CSV file cut on record boundaries, quoted line breaks honoured, so that its parts can
be parsed in parallel (by Dask workers) and give the rows, and the line numbers, of one pass over the whole file.

Where a record starts cannot be told from an arbitrary offset: a line break may be inside a quoted value, and
whether it is depends on every quote before it. So the file is cut in two passes. First each nominal range is
summarised on its own (``summarise``, any order, anywhere): its quote count, and the first line break after which a
record starts if the range was entered outside a quoted value, and the first if it was entered inside one. Then
``cut`` walks the summaries in order, knowing the state each range is entered in from the quote counts before it,
and picks the true boundary in each: exact for any CSV whose quotes are RFC 4180's (a doubled quote inside a
quoted value counts twice and changes nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

QUOTE = ord('"')
NEWLINE = ord("\n")


@dataclass(frozen=True)
class RangeSummary:
    """One nominal range ``[start, end)`` of a file: what ``cut`` needs of it."""

    start: int
    end: int
    quotes: int  # quote characters in the range
    newlines: int  # line feeds in the range
    # The offset just after the first line feed that ends a record, entered outside a quoted value ([0]) or inside
    # one ([1]), and how many line feeds of the range come before that one; None where there is none.
    after: tuple[int | None, int | None]
    before: tuple[int, int]


@dataclass(frozen=True)
class Partition:
    """Whole records of a file: bytes ``[start, end)``, whose first line is line ``first_line`` of the file
    (1 for the header's line)."""

    index: int
    start: int
    end: int
    first_line: int


def nominal_ranges(size: int, data_start: int, target_bytes: int) -> list[tuple[int, int]]:
    """``[data_start, size)`` in ranges of about ``target_bytes`` each (at least one)."""
    span = max(0, size - data_start)
    count = max(1, -(-span // max(1, target_bytes)))
    edges = [data_start + span * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def summarise(data: bytes, start: int) -> RangeSummary:
    """The summary of the bytes ``data`` found at offset ``start`` of the file."""
    array = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(array == QUOTE)
    newlines = np.flatnonzero(array == NEWLINE)
    # Quotes before each line feed: a line feed ends a record when that count, plus the entry state, is even.
    parity = np.searchsorted(quotes, newlines) % 2
    after: list[int | None] = []
    before: list[int] = []
    for entered_inside in (0, 1):
        ends = np.flatnonzero(parity == entered_inside)  # entered inside: an odd count closes the value first
        if len(ends):
            after.append(start + int(newlines[ends[0]]) + 1)
            before.append(int(ends[0]))
        else:
            after.append(None)
            before.append(len(newlines))
    return RangeSummary(
        start,
        start + len(data),
        len(quotes),
        len(newlines),
        (after[0], after[1]),
        (before[0], before[1]),
    )


def cut(summaries: Sequence[RangeSummary], data_start: int, first_data_line: int) -> list[Partition]:
    """Partitions of whole records from the summaries of consecutive ranges covering ``[data_start, size)``, the
    first range entered outside a quoted value at line ``first_data_line``: partition k starts at the first record
    that starts in range k. A range in which none starts (inside one long quoted value, or no line feed at all)
    adds no partition of its own."""
    if not summaries:
        return []
    end = summaries[-1].end
    starts = [(data_start, first_data_line)]
    inside = summaries[0].quotes % 2 == 1  # the state range 1 is entered in
    lines = first_data_line + summaries[0].newlines
    for summary in summaries[1:]:
        state = int(inside)
        boundary = summary.after[state]
        if boundary is not None and boundary < end:  # the file's last line feed starts no record
            starts.append((boundary, lines + summary.before[state] + 1))
        inside ^= summary.quotes % 2 == 1
        lines += summary.newlines
    partitions = []
    for index, (start, line) in enumerate(starts):
        stop = starts[index + 1][0] if index + 1 < len(starts) else end
        partitions.append(Partition(index, start, stop, line))
    return partitions
