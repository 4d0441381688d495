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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from mlsvc.config import Settings
from mlsvc.datasources.partitions import cut, nominal_ranges, summarise
from mlsvc.datasources.plan import ReadPlan
from mlsvc.datasources.scan import ScanCounts, read_range_untyped, read_untyped
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectInfo
from mlsvc.prediction.output import encode, header_member, result_uri
from mlsvc.prediction.scorer import ModelCard, Scorer, ScorerCache
from mlsvc.registry import ArtifactRef

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext
    from mlsvc.objects import ObjectStore
    from mlsvc.objects.staging import StagedOutputs
    from mlsvc.planes import Planes

log = logging.getLogger("mlsvc.batch")

WAIT_S = 0.5  # how long the job waits on the parts between two looks at its progress (written every second)
HEAD_BYTES = 1024 * 1024  # a header must end within this many bytes for its file to be cut in ranges
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Part:
    """One part of one input file: the whole file (``end`` None) or the records in bytes ``[start, end)``."""

    file_index: int
    index: int
    info: ObjectInfo
    start: int
    end: int | None
    first_line: int
    staged: str  # where its gzip members are written


@dataclass(frozen=True)
class PartResult:
    rows: int
    seen: ScanCounts


@dataclass(frozen=True)
class Task:
    """What a Dask worker needs to score a part: the model resource (to find and verify its files), the plan
    of the part's file, and the part."""

    model: Mapping[str, Any]
    plan: ReadPlan
    row_id: str | None
    part: Part


def connect(settings: Settings) -> Any:
    """A Dask client of the configured scheduler; a clear error when it cannot be reached."""
    from distributed import Client

    try:
        return Client(settings.dask_scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except OSError as exc:
        raise MlsvcError(
            ErrorCode.INTERNAL,
            f"the Dask scheduler at {settings.dask_scheduler} (MLSVC_DASK_SCHEDULER) cannot be reached: {exc}; "
            "start it, or unset MLSVC_DASK_SCHEDULER to score in this worker",
        ) from exc


def plan_parts(
    client: Any, objects: ObjectStore, plan: ReadPlan, stage: Callable[[int, int], str], part_bytes: int
) -> list[Part]:
    """Every file of the plan as parts, in order: a file of up to ``part_bytes`` (or gzipped, or whose header
    does not end in its first HEAD_BYTES) whole, a larger one in ranges cut on record boundaries, the cut's
    summaries computed on the cluster."""
    parts: list[Part] = []
    for file_index, info in enumerate(plan.files):
        ranges = _ranges(objects, plan, info, part_bytes)
        if ranges is None:
            parts.append(Part(file_index, 0, info, 0, None, 1, stage(file_index, 0)))
            continue
        data_start, first_line, spans = ranges
        summaries = client.gather(client.map(_summary, [info.uri] * len(spans), spans, pure=False))
        for part in cut(summaries, data_start, first_line):
            staged = stage(file_index, part.index)
            parts.append(Part(file_index, part.index, info, part.start, part.end, part.first_line, staged))
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


def _summary(uri: str, span: tuple[int, int]) -> Any:
    """On a Dask worker: the summary of one nominal range of a file."""
    with _worker_planes().objects.open_range(uri, span[0], span[1]) as reader:
        return summarise(reader.read(), span[0])


def score_part(task: Task) -> PartResult:
    """On a Dask worker: the part's rows typed, scored and written as gzip members to its staged name."""
    planes = _worker_planes()
    scorer = _scorers.get(task.model)
    part, plan = task.part, task.plan
    counts = ScanCounts()
    if part.end is None:
        pieces = read_untyped(planes.objects, plan, counts)
    else:
        pieces = read_range_untyped(planes.objects, plan, part.info, part.start, part.end, part.first_line, counts)
    rows = 0
    with planes.objects.open_write(part.staged, compressed=True) as out:
        for piece in pieces:
            encoded = encode(scorer, piece, task.row_id, lambda n, b: None)
            counts.add(encoded.seen)
            out.write(encoded.member)
            rows += encoded.rows
    return PartResult(rows, counts)


def join_parts(objects: ObjectStore, parts: list[Part], header: bytes, out: BinaryIO) -> None:
    """The parts' outputs one after another, after the header's gzip member: one gzip file of many members."""
    out.write(header)
    for part in parts:
        with objects.open_raw(part.staged) as reader:
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

    def stage(file_index: int, index: int) -> str:
        return staged.stage(f"{prefix}/parts/{bp['id']}-{file_index}-{index}.csv.gz")

    client = connect(ctx.settings)
    futures: list[Any] = []
    try:
        parts = plan_parts(client, ctx.objects, plan, stage, ctx.settings.partition_bytes)
        log.info("batch prediction %s is scored in %d parts on the Dask cluster", bp["id"], len(parts))
        tasks = [Task(model, plan.only(p.info), plan.row_id, p) for p in parts]
        futures = client.map(score_part, tasks, pure=False)
        with client.as_current():  # distributed.wait looks for the client there
            results = _gather_in_any_order(futures, parts, progress)
        for result in results:
            counts.add_pass(result.seen)
        outputs = []
        for file_index, info in enumerate(plan.files):
            own = [i for i, p in enumerate(parts) if p.file_index == file_index]
            final = result_uri(prefix, bp["id"], info.uri)
            with ctx.objects.open_write(staged.stage(final), compressed=True) as out:
                join_parts(ctx.objects, [parts[i] for i in own], header_member(card, plan.row_id), out)
            outputs.append({"input": info.uri, "output": final, "rows": sum(results[i].rows for i in own)})
            progress.file_done(info)
        return outputs
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.close()


def _gather_in_any_order(futures: list[Any], parts: list[Part], progress: Any) -> list[PartResult]:
    """Each part's result, in the parts' order, as the cluster finishes them; progress moves with each part,
    and is written (or the job stopped, if its resource was deleted) every second or so."""
    from distributed import wait

    results: dict[int, PartResult] = {}
    position = {f.key: i for i, f in enumerate(futures)}
    pending = set(futures)
    while pending:
        try:
            done, pending = wait(pending, timeout=WAIT_S, return_when="FIRST_COMPLETED")
        except TimeoutError:  # none finished within the second: report (and look for a delete) all the same
            progress.report()
            continue
        for future in done:
            result = future.result()  # a part's error (bad data, a refused model) ends the job with its message
            index = position[future.key]
            results[index] = result
            progress.scored(result.rows, _part_bytes(parts[index]))
        progress.report()
    return [results[i] for i in range(len(futures))]


def _part_bytes(part: Part) -> float:
    return float(part.info.size if part.end is None else part.end - part.start)


# --- state of a Dask worker process ---------------------------------------------------------------------------

_lock = threading.Lock()
_planes: Planes | None = None
SCORERS_KEPT = 4


def _worker_planes() -> Planes:
    """The stores this Dask worker's own settings name, opened once per process."""
    global _planes
    with _lock:
        if _planes is None:
            from mlsvc.planes import open_planes

            _planes = open_planes(Settings.from_env())
        return _planes


def _load_scorer(model: Mapping[str, Any]) -> Scorer:
    """The model's scorer, once its files match their signed digests."""
    return Scorer(ModelCard.from_resource(model), _worker_planes().registry.load(ArtifactRef.of(model)))


# The models this Dask worker has loaded, kept for the next parts (of this batch, and of the next).
_scorers = ScorerCache(_load_scorer, capacity=SCORERS_KEPT)
