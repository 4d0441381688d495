"""The batch prediction job: stream the input as typed columns, score, format and gzip its chunks in the worker's
share of the cores, and write gzipped CSV in Amazon ML's layout as staged outputs, published with a manifest last."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from mlsvc.config import Settings
from mlsvc.datasources.plan import OpenedFiles, ReadPlan, model_schema
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.datasources.scan import ScanCounts, TypedChunk, Untyped, read_untyped, scan
from mlsvc.errors import MlsvcError
from mlsvc.objects import ObjectInfo
from mlsvc.objects.staging import StagedOutputs, discard_staged
from mlsvc.prediction.bitvectors import evaluate_in
from mlsvc.prediction.helpers import HelperPool
from mlsvc.prediction.output import Encoded, encode, header_member, result_prefix, result_uri
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.registry import ArtifactRef
from mlsvc.resources import Attribute, AttributeType, ModelType, Schema

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext
    from mlsvc.planes import Planes

log = logging.getLogger("mlsvc.batch")
_ARROW_POOL = pa.default_memory_pool()
IN_FLIGHT_PER_THREAD = 2  # chunks queued per scoring thread: enough to keep it busy, bounded memory
REPORT_EVERY_S = 1.0  # how often a running job's progress is written at most
GZIP_RATIO_GUESS = 4.0  # a gzipped CSV's size against its text, for progress by bytes


def run(ctx: JobContext) -> Mapping[str, Any]:
    bp = ctx.resource
    model = ctx.completed("model", bp["model_id"])
    if bp.get("datasource_id"):
        ctx.completed("datasource", bp["datasource_id"])
    card = None if model["model_type"] == ModelType.RECOMMENDATION.value else ModelCard.from_resource(model)
    opened = OpenedFiles()  # the first file, opened to read its header, is read on from there (one GET, not two)
    try:
        return _run(ctx, model, card, opened)
    finally:
        opened.close()


def _run(ctx: JobContext, model: Mapping[str, Any], card: ModelCard | None, opened: OpenedFiles) -> Mapping[str, Any]:
    bp = ctx.resource
    ref = ArtifactRef.of(model)
    # On Dask the parts' workers load the model; this worker only checks its files (no deserializing) up front.
    on_cluster = bool(ctx.settings.dask_scheduler) and card is not None
    prefix = _join(bp["output_uri"], "batch-prediction")
    staged = StagedOutputs(ctx.objects, prefix, bp["id"], ctx.claim.attempt, result_prefix(prefix, bp["id"]))
    # The model loads (or is checked) and the output is readied while the input's first bytes come (from S3, each
    # waits on round trips); the model is only used once every check has passed, the input's reported first.
    with ThreadPoolExecutor(2, thread_name_prefix="batch-start") as starting:
        fitted = starting.submit(ctx.registry.verify if on_cluster else ctx.registry.load, ref)
        ready = starting.submit(_ready_output, staged)
        plan = _plan(ctx, bp, _features(model, card), opened)  # the input's columns against the model's
        ready.result()
        loaded = fitted.result()
    counts = ScanCounts()
    progress = _Progress(ctx, plan, counts)
    outputs: list[dict[str, Any]] = []
    try:
        if on_cluster and _partitionable(plan):
            from mlsvc.prediction.partitioned import score_on_cluster

            assert card is not None
            outputs = score_on_cluster(ctx, model, card, plan, staged, counts, progress)
        else:
            fitted_model = ctx.registry.load(ref) if on_cluster else loaded
            outputs = _score_here(ctx, fitted_model, model, card, plan, staged, counts, progress, opened)
        manifest_uri = _join(prefix, f"{bp['id']}.manifest")
        manifest = json.dumps({o["input"]: o["output"] for o in outputs}, indent=2).encode()
        ctx.progress(0.99)  # the last look before publishing: raises JobCancelled if the resource was deleted
        staged.publish([o["output"] for o in outputs], manifest_uri, manifest)
    except BaseException:  # failed, cancelled, or handed back at shutdown: this attempt's files go
        staged.abandon()
        raise
    return {
        "rows_total": counts.seen_rows,
        "rows_scored": sum(o["rows"] for o in outputs),
        "rows_with_invalid_values": counts.invalid_rows,
        "invalid_row_count": counts.bad_rows.count,
        "invalid_examples": counts.bad_rows.examples,
        "outputs": outputs,
        "manifest_uri": manifest_uri,
    }


def _score_here(
    ctx: JobContext,
    loaded: Any,
    model: Mapping[str, Any],
    card: ModelCard | None,
    plan: ReadPlan,
    staged: StagedOutputs,
    counts: ScanCounts,
    progress: _Progress,
    opened: OpenedFiles,
) -> list[dict[str, Any]]:
    """Score every file of the plan in this worker's threads, each file's result staged whole."""
    outputs = []
    prefix = staged.prefix
    with _Scoring(ctx.settings, loaded, model, card) as scoring:
        for info in plan.files:
            final = result_uri(prefix, ctx.resource["id"], info.uri)
            rows = _write_file(ctx, scoring, plan.only(info), counts, staged, final, progress, opened)
            outputs.append({"input": info.uri, "output": final, "rows": rows})
            progress.file_done(info)
    return outputs


def _ready_output(staged: StagedOutputs) -> None:
    """What earlier attempts left is removed, and the output is probed: it can be written (credentials, bucket,
    permissions) before any row is scored."""
    staged.discard_earlier_attempts()
    staged.probe()


def _partitionable(plan: ReadPlan) -> bool:
    """Whether the plan's rows can be scored in parts: not when a sequential split places them by position (such
    a job is scored here, and its log says why)."""
    if not needs_row_count(plan.splitting):
        return True
    log.info("a sequential split places rows by their position: this batch is scored in the worker, not on Dask")
    return False


def discard(planes: Planes, bp: Mapping[str, Any]) -> None:
    """Remove whatever any attempt of this batch prediction staged: the worker calls it once the job ended without
    its result (failed, cancelled by a delete, or given up after its worker died)."""
    prefix = _join(bp["output_uri"], "batch-prediction")
    discard_staged(planes.objects, prefix, bp["id"], result_prefix(prefix, bp["id"]))


def _features(model: Mapping[str, Any], card: ModelCard | None) -> list[Attribute]:
    """The columns the model reads: a recommender only its user column."""
    if card is not None:
        return card.features
    return [Attribute(attributeName=model["roles"]["user"], attributeType=AttributeType.CATEGORICAL)]


def _plan(ctx: JobContext, bp: Mapping[str, Any], features: list[Attribute], opened: OpenedFiles) -> ReadPlan:
    limit = ctx.settings.max_record_bytes
    if not bp.get("datasource_id"):
        return ReadPlan.of_data_uri(ctx.objects, bp["data_uri"], features, bp.get("row_id"), limit, opened)
    ds = ctx.metadata.get("datasource", bp["datasource_id"])
    schema = model_schema(Schema.model_validate(ds["schema"]), features, ds["id"])
    return ReadPlan.of_datasource(ctx.objects, ds, schema, limit, opened)


def _write_file(
    ctx: JobContext,
    scoring: _Scoring,
    plan: ReadPlan,
    counts: ScanCounts,
    staged: StagedOutputs,
    final: str,
    progress: _Progress,
    opened: OpenedFiles,
) -> int:
    """Score the plan's one file into the output ``staged`` publishes as ``final``: the rows it wrote (for a
    recommender, the users it answered)."""
    if scoring.card is None:
        with ctx.objects.open_write(staged.stage(final)) as out:
            chunks = scan(ctx.objects, plan, counts, keep_invalid=True, opened=opened)
            return _recommend(scoring, chunks, out, progress)
    # Each chunk is gzipped by the thread that scored it, as a gzip member of its own: a file of members one after
    # another is one gzip file to every reader. The file is written under its final name where the store can
    # keep it unseen until published (no copy then), else staged.
    held = staged.hold(final)
    try:
        out = held.stream
        out.write(header_member(scoring.card, plan.row_id))
        rows = 0
        pieces = read_untyped(ctx.objects, plan, counts, opened=opened)
        for piece, n in scoring.map(pieces, plan.row_id, counts, progress):
            out.write(piece)
            rows += n
        held.finish()
    except BaseException:
        held.abort()
        raise
    return rows


def _recommend(scoring: _Scoring, chunks: Iterator[TypedChunk], out: BinaryIO, progress: _Progress) -> int:
    """Top-k items for each user of the file, once per user, in order of first appearance: k rows per user."""
    recommender, user_column = scoring.recommender, scoring.user_column
    seen: set[str] = set()
    users = 0
    out.write(b"user_id,rank,item_id,score,cold_start\n")
    for chunk in chunks:
        ids = [u for u in dict.fromkeys(chunk.typed[user_column].dropna()) if u not in seen]
        seen.update(ids)
        if ids:
            frame = recommender.recommend_frame(ids)
            out.write(frame.to_csv(index=False, header=False, float_format="%.10g").encode())
            users += len(ids)
        progress.scored(len(chunk.typed), 0)
        progress.report()
    return users


class _Progress:
    """Rows scored so far, counted by the scoring threads slice by slice, and reported by the job's own thread at
    most every ``REPORT_EVERY_S`` (and whenever it waits for a slow chunk), so a running job's ``rows_scored`` and
    ``progress`` move every second or so however its input is chunked."""

    def __init__(self, ctx: JobContext, plan: ReadPlan, counts: ScanCounts) -> None:
        self.ctx = ctx
        self.counts = counts
        self.total_rows = plan.total_rows or ctx.resource.get("rows_total")
        # Without a row count, progress is by bytes: a gzipped file's are guessed from its compressed size.
        self.total_bytes = sum(_text_bytes(f) for f in plan.files) or 1
        self.rows = 0
        self.bytes = 0.0
        self.done_bytes = 0.0
        self._lock = threading.Lock()
        self._last = 0.0
        self._reported = False  # whether rows scored were written yet

    def scored(self, rows: int, nbytes: float) -> None:
        with self._lock:
            self.rows += rows
            self.bytes += nbytes

    def file_done(self, info: ObjectInfo) -> None:
        with self._lock:
            self.done_bytes += _text_bytes(info)
            self.bytes = 0.0

    def report(self, force: bool = False) -> None:
        """Write the figures if ``REPORT_EVERY_S`` has passed, or if these are the first rows scored."""
        now = time.monotonic()
        with self._lock:
            rows, done = self.rows, self.done_bytes + self.bytes
        if not force and now - self._last < REPORT_EVERY_S and (self._reported or not rows):
            return
        self._last = now
        self._reported = self._reported or rows > 0
        if self.total_rows:
            fraction = rows / self.total_rows
        else:
            fraction = done / self.total_bytes
        self.ctx.progress(
            min(0.98, fraction),
            rows_scored=rows,
            rows_with_invalid_values=self.counts.invalid_rows,
            invalid_row_count=self.counts.bad_rows.count,
        )


def _text_bytes(info: ObjectInfo) -> float:
    return info.size * (GZIP_RATIO_GUESS if info.uri.lower().endswith(".gz") else 1.0)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# --- scoring, in threads ---


class _Scoring:
    """Types, scores, formats and gzips chunks in order in ``batch_processes`` threads, with a bounded number of
    chunks in flight, while the job's own thread reads and parses the next ones. The threads share the one loaded
    model and the chunks' columns as they are (no copy, no pickling): reading, parsing and typing are arrow's, and
    scoring, formatting and compressing run in numpy, sklearn's compiled predictors, arrow and ISA-L, which let go
    of the interpreter while they work; a tree ensemble's bitvectors, dozens of numpy calls a block, are evaluated
    in a helper process per thread (``mlsvc.prediction.helpers``). A recommender answers whole chunks of users
    itself."""

    def __init__(self, settings: Settings, fitted: Any, model: Mapping[str, Any], card: ModelCard | None) -> None:
        self.card = card
        self.threads = max(1, settings.batch_processes)
        self.scorer: Scorer | None = None
        self.recommender: Any = None
        self.user_column: str | None = None
        self.pool: ThreadPoolExecutor | None = None
        if card is None:
            self.recommender = fitted
            self.user_column = model["roles"]["user"]
            return
        self.scorer = Scorer(card, fitted)
        self.helpers = HelperPool()  # tree ensembles' bitvectors are evaluated in helper processes
        self.pool = ThreadPoolExecutor(
            self.threads, thread_name_prefix="batch-score", initializer=_scoring_thread, initargs=(self.helpers,)
        )

    def __enter__(self) -> _Scoring:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.helpers.close()

    def map(
        self, pieces: Iterator[Untyped], row_id: str | None, counts: ScanCounts, progress: _Progress
    ) -> Iterator[tuple[bytes, int]]:
        """Each chunk's rows as a gzip member of CSV rows, and how many rows it holds, in the chunks' order; what
        typing each chunk counted is added to ``counts`` in that order too."""
        assert self.pool is not None
        pending: deque[Future[Encoded]] = deque()
        try:
            for piece in pieces:
                pending.append(self.pool.submit(self._encode, piece, row_id, progress))
                del piece
                while pending and (len(pending) >= self.threads * IN_FLIGHT_PER_THREAD or pending[0].done()):
                    yield _result(pending.popleft(), counts, progress)
                progress.report()
            while pending:
                yield _result(pending.popleft(), counts, progress)
        except MlsvcError:  # the data is bad further on: the resource still says how far the job got
            wait(pending)
            progress.report(force=True)
            raise
        progress.report(force=True)

    def _encode(self, piece: Untyped, row_id: str | None, progress: _Progress) -> Encoded:
        assert self.scorer is not None and self.card is not None
        return encode(self.scorer, piece, row_id, progress.scored)


def _result(future: Future[Encoded], counts: ScanCounts, progress: _Progress) -> tuple[bytes, int]:
    """The future's member and rows, reporting progress every ``REPORT_EVERY_S`` while it is not there yet."""
    while True:
        try:
            encoded = future.result(timeout=REPORT_EVERY_S)
        except FutureTimeout:
            progress.report()
            continue
        counts.add(encoded.seen)
        _ARROW_POOL.release_unused()  # see scan_columns
        return encoded.member, encoded.rows


def _scoring_thread(helpers: HelperPool) -> None:
    from threadpoolctl import threadpool_limits

    # One OpenMP thread per scoring thread: the threads are the parallelism (sklearn's tree predictors would
    # otherwise each start a team as large as the machine).
    threadpool_limits(limits=1, user_api="openmp")
    evaluate_in(helpers)
