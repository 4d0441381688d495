"""Batch predictions scored in parts on a Dask cluster: whole small (or gzipped) files, and byte ranges of a large
file cut on record boundaries, each typed and scored by the compiled scorer on a Dask worker, which reads its part
from the store and stages its output there; the job joins the parts in order into each input's result file.

A Dask worker runs with the same MLSVC_* and AWS settings as an mlsvc worker (its own ``Settings.from_env()``), so
it opens the same stores and verifies a model's files against their signed digests before it loads them; nothing
but the part's description and its counts travel through the scheduler. A lost Dask worker's parts are run again
by Dask: a part's output is written whole under its own staged name, or not at all.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from mlsvc.datasources.parts import Part, plan_parts
from mlsvc.datasources.plan import ReadPlan
from mlsvc.datasources.scan import ScanCounts
from mlsvc.jobs.cluster import connect, gather_in_order, worker_planes
from mlsvc.prediction.output import encode, header_member, result_uri
from mlsvc.prediction.scorer import ModelCard, Scorer, ScorerCache
from mlsvc.registry import ArtifactRef

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext
    from mlsvc.objects import ObjectStore
    from mlsvc.objects.staging import StagedOutputs

log = logging.getLogger("mlsvc.batch")


@dataclass(frozen=True)
class PartResult:
    rows: int
    seen: ScanCounts


@dataclass(frozen=True)
class Task:
    """What a Dask worker needs to score a part: the model resource (to find and verify its files), the plan
    of the part's file, the part, and where its gzip members are written."""

    model: Mapping[str, Any]
    plan: ReadPlan
    row_id: str | None
    part: Part
    staged: str


def score_part(task: Task) -> PartResult:
    """On a Dask worker: the part's rows typed, scored and written as gzip members to its staged name."""
    planes = worker_planes()
    scorer = _scorers.get(task.model)
    counts = ScanCounts()
    rows = 0
    with planes.objects.open_write(task.staged, compressed=True) as out:
        for piece in task.part.read(planes.objects, task.plan, counts):
            encoded = encode(scorer, piece, task.row_id, lambda n, b: None)
            counts.add(encoded.seen)
            out.write(encoded.member)
            rows += encoded.rows
    return PartResult(rows, counts)


def join_parts(objects: ObjectStore, staged: list[str], header: bytes, out: BinaryIO) -> None:
    """The parts' outputs one after another, after the header's gzip member: one gzip file of many members."""
    out.write(header)
    for name in staged:
        with objects.open_raw(name) as reader:
            shutil.copyfileobj(reader, out, 1024 * 1024)


def score_on_cluster(
    ctx: JobContext,
    model: Mapping[str, Any],
    card: ModelCard,
    plan: ReadPlan,
    staged: StagedOutputs,
    counts: ScanCounts,
    progress: Any,
) -> list[dict[str, Any]]:
    """Score every file of the plan in parts on the cluster; each file's result staged whole, as the local path
    stages it: ``{"input", "output", "rows"}`` per file, in order. Counts are added in the parts' order."""
    bp = ctx.resource
    prefix = staged.prefix

    def stage(part: Part) -> str:
        return staged.stage(f"{prefix}/parts/{bp['id']}-{part.file_index}-{part.index}.csv.gz")

    client = connect(ctx.settings)
    futures: list[Any] = []
    try:
        parts = plan_parts(client, ctx.objects, plan, ctx.settings.partition_bytes)
        log.info("batch prediction %s is scored in %d parts on the Dask cluster", bp["id"], len(parts))
        tasks = [Task(model, plan.only(p.info), plan.row_id, p, stage(p)) for p in parts]
        futures = client.map(score_part, tasks, pure=False)

        def scored(index: int, result: PartResult) -> None:
            progress.scored(result.rows, parts[index].nbytes)

        results = gather_in_order(client, futures, scored, progress.report)
        for result in results:
            counts.add_pass(result.seen)
        outputs = []
        for file_index, info in enumerate(plan.files):
            own = [i for i, p in enumerate(parts) if p.file_index == file_index]
            final = result_uri(prefix, bp["id"], info.uri)
            with ctx.objects.open_write(staged.stage(final), compressed=True) as out:
                join_parts(ctx.objects, [tasks[i].staged for i in own], header_member(card, plan.row_id), out)
            outputs.append({"input": info.uri, "output": final, "rows": sum(results[i].rows for i in own)})
            progress.file_done(info)
        return outputs
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.close()


# --- state of a Dask worker process ---

SCORERS_KEPT = 4


def _load_scorer(model: Mapping[str, Any]) -> Scorer:
    """The model's scorer, once its files match their signed digests."""
    return Scorer(ModelCard.from_resource(model), worker_planes().registry.load(ArtifactRef.of(model)))


# The models this Dask worker has loaded, kept for the next parts (of this batch, and of the next).
_scorers = ScorerCache(_load_scorer, capacity=SCORERS_KEPT)
