"""The datasource's counting and statistics pass in parts on a Dask cluster: each part (a file, or a byte range of
a large one cut on record boundaries) read from the store by a Dask worker, its rows typed and counted and its
statistics accumulated there; the job merges the parts' counts and statistics in the parts' order, to what one
pass counts and what the accumulators' merge gives (exact where one pass is exact)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsvc.datasources.parts import Part, plan_parts
from mlsvc.datasources.plan import ReadPlan
from mlsvc.datasources.scan import ScanCounts
from mlsvc.datasources.statistics import StatisticsAccumulator
from mlsvc.jobs.cluster import connect, gather_in_order, worker_planes

if TYPE_CHECKING:
    from mlsvc.config import Settings

log = logging.getLogger("mlsvc.datasources")


@dataclass(frozen=True)
class Task:
    """What a Dask worker needs for one part: the plan of the part's file, the part, whether to accumulate
    statistics, and the seed of the part's row sample."""

    plan: ReadPlan
    part: Part
    statistics: bool
    seed: int


@dataclass(frozen=True)
class PartPass:
    counts: ScanCounts
    statistics: StatisticsAccumulator | None


def pass_over_part(task: Task) -> PartPass:
    """On a Dask worker: the part's rows read, typed and counted, and their statistics, as the local pass takes
    them (rows with invalid values counted, and left out of the statistics)."""
    objects = worker_planes().objects
    counts = ScanCounts()
    stats = StatisticsAccumulator(task.plan.schema, seed=task.seed) if task.statistics else None
    for piece in task.part.read(objects, task.plan, counts):
        chunk, seen = piece.typed(keep_invalid=False)
        del piece
        counts.add(seen)
        if chunk is not None and stats is not None:
            stats.update_columns(chunk.columns, chunk.invalid, chunk.rows)
        del chunk
    return PartPass(counts, stats)


def pass_on_cluster(
    settings: Settings,
    objects: Any,
    plan: ReadPlan,
    counts: ScanCounts,
    statistics: bool,
    on_progress: Callable[[float], None],
) -> StatisticsAccumulator | None:
    """The pass over every file of ``plan`` in parts on the cluster: what it saw added to ``counts``, and the
    merged statistics (None unless ``statistics``). ``on_progress`` gets the fraction of bytes done, every half
    second or so (it may raise to stop the job)."""
    client = connect(settings)
    futures: list[Any] = []
    try:
        parts = plan_parts(client, objects, plan, settings.partition_bytes)
        log.info("a datasource pass over %s runs in %d parts on the Dask cluster", plan.source, len(parts))
        tasks = [Task(plan.only(p.info), p, statistics, seed) for seed, p in enumerate(parts)]
        futures = client.map(pass_over_part, tasks, pure=False)
        total = sum(p.nbytes for p in parts) or 1.0
        done = [0.0]

        def finished(index: int, _: PartPass) -> None:
            done[0] += parts[index].nbytes

        results = gather_in_order(client, futures, finished, lambda: on_progress(done[0] / total))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.close()
    merged: StatisticsAccumulator | None = None
    for result in results:
        counts.add_pass(result.counts)
        if result.statistics is not None:
            if merged is None:
                merged = result.statistics
            else:
                merged.merge(result.statistics)
    return merged
