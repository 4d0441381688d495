"""A read plan's files as parts for a Dask cluster: a small or gzipped file whole, a larger one as byte ranges cut
on record boundaries (the cut's range summaries computed on the cluster, where the data is read from the store),
each readable on its own by a Dask worker to the same rows and line numbers as one pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlsvc.datasources.partitions import RangeSummary, cut, nominal_ranges, summarise
from mlsvc.datasources.plan import ReadPlan
from mlsvc.datasources.scan import ScanCounts, Untyped, read_range_untyped, read_untyped
from mlsvc.jobs.cluster import worker_planes
from mlsvc.objects import ObjectInfo, ObjectStore

HEAD_BYTES = 1024 * 1024  # a header must end within this many bytes for its file to be cut in ranges


@dataclass(frozen=True)
class Part:
    """One part of one input file: the whole file (``end`` None) or the records in bytes ``[start, end)``."""

    file_index: int
    index: int
    info: ObjectInfo
    start: int
    end: int | None
    first_line: int

    @property
    def nbytes(self) -> float:
        return float(self.info.size if self.end is None else self.end - self.start)

    def read(self, objects: ObjectStore, plan: ReadPlan, counts: ScanCounts) -> Iterator[Untyped]:
        """The part's raw chunks, counted in ``counts`` as they are read (``plan`` is the plan of its file)."""
        if self.end is None:
            return read_untyped(objects, plan, counts)
        return read_range_untyped(objects, plan, self.info, self.start, self.end, self.first_line, counts)


def plan_parts(client: Any, objects: ObjectStore, plan: ReadPlan, part_bytes: int) -> list[Part]:
    """Every file of the plan as parts, in order: a file of up to ``part_bytes`` (or gzipped, or whose header
    does not end in its first HEAD_BYTES) whole, a larger one in ranges cut on record boundaries."""
    parts: list[Part] = []
    for file_index, info in enumerate(plan.files):
        ranges = _ranges(objects, plan, info, part_bytes)
        if ranges is None:
            parts.append(Part(file_index, 0, info, 0, None, 1))
            continue
        data_start, first_line, spans = ranges
        summaries = client.gather(client.map(_summary, [info.uri] * len(spans), spans, pure=False))
        for part in cut(summaries, data_start, first_line):
            parts.append(Part(file_index, part.index, info, part.start, part.end, part.first_line))
    return parts


def _ranges(
    objects: ObjectStore, plan: ReadPlan, info: ObjectInfo, part_bytes: int
) -> tuple[int, int, list[tuple[int, int]]] | None:
    if info.size <= part_bytes or info.uri.lower().endswith(".gz"):
        return None
    data_start, first_line = 0, 1
    if plan.schema.dataFileContainsHeader:
        with objects.open_range(info.uri, 0, min(info.size, HEAD_BYTES)) as head:
            summary = summarise(head.read(), 0)
        if summary.after[0] is None:
            return None
        data_start, first_line = summary.after[0], summary.before[0] + 2
    return data_start, first_line, nominal_ranges(info.size, data_start, part_bytes)


def _summary(uri: str, span: tuple[int, int]) -> RangeSummary:
    """On a Dask worker: the summary of one nominal range of a file."""
    with worker_planes().objects.open_range(uri, span[0], span[1]) as reader:
        return summarise(reader.read(), span[0])
