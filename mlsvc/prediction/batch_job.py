"""The batch prediction job: stream the input in chunks, score them (in parallel processes when the worker has
cores to spare), and write gzipped CSV in Amazon ML's layout as staged outputs, published with a manifest last."""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd

from mlsvc.config import Settings
from mlsvc.datasources.plan import ReadPlan, model_schema
from mlsvc.datasources.scan import ScanCounts, TypedChunk, scan
from mlsvc.objects.staging import StagedOutputs, discard_staged
from mlsvc.prediction.labels import binary_labels
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.registry import ArtifactRef, ModelRegistry
from mlsvc.resources import Attribute, AttributeType, ModelType, Schema

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext
    from mlsvc.planes import Planes

IN_FLIGHT_PER_PROCESS = 2  # chunks queued per scoring process: enough to keep it busy, bounded memory


def run(ctx: JobContext) -> Mapping[str, Any]:
    bp = ctx.resource
    model = ctx.completed("model", bp["model_id"])
    card = None if model["model_type"] == ModelType.RECOMMENDATION.value else ModelCard.from_resource(model)
    plan = _plan(ctx, bp, _features(model, card))
    prefix = _join(bp["output_uri"], "batch-prediction")
    staged = StagedOutputs(ctx.objects, prefix, bp["id"], ctx.claim.attempt)
    staged.discard_earlier_attempts()
    counts = ScanCounts()
    outputs: list[dict[str, Any]] = []
    try:
        with _Scoring(ctx.settings, ctx.registry, model, card) as scoring:
            for info in plan.files:
                final = _join(prefix, "result", f"{bp['id']}-{_base(info.uri)}.gz")
                rows = _write_file(ctx, scoring, plan.only(info), counts, staged.stage(final), card)
                outputs.append({"input": info.uri, "output": final, "rows": rows})
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


def discard(planes: Planes, bp: Mapping[str, Any]) -> None:
    """Remove whatever any attempt of this batch prediction staged: the worker calls it once the job ended without
    its result (failed, cancelled by a delete, or given up after its worker died)."""
    discard_staged(planes.objects, _join(bp["output_uri"], "batch-prediction"), bp["id"])


def _features(model: Mapping[str, Any], card: ModelCard | None) -> list[Attribute]:
    """The columns the model reads: a recommender only its user column."""
    if card is not None:
        return card.features
    return [Attribute(attributeName=model["roles"]["user"], attributeType=AttributeType.CATEGORICAL)]


def _plan(ctx: JobContext, bp: Mapping[str, Any], features: list[Attribute]) -> ReadPlan:
    limit = ctx.settings.max_record_bytes
    if not bp.get("datasource_id"):
        return ReadPlan.of_data_uri(ctx.objects, bp["data_uri"], features, bp.get("row_id"), limit)
    ds = ctx.metadata.get("datasource", bp["datasource_id"])
    schema = model_schema(Schema.model_validate(ds["schema"]), features, ds["id"])
    return ReadPlan.of_datasource(ctx.objects, ds, schema, limit)


def _write_file(
    ctx: JobContext, scoring: _Scoring, plan: ReadPlan, counts: ScanCounts, temporary: str, card: ModelCard | None
) -> int:
    """Score the plan's one file into ``temporary``: the rows it wrote (for a recommender, the users it answered)."""
    with ctx.objects.open_write(temporary) as out:
        chunks = scan(ctx.objects, plan, counts, keep_invalid=True)
        if card is None:
            return _recommend(ctx, scoring, plan, counts, chunks, out)
        return _score(ctx, scoring, plan, counts, chunks, out, card)


def _score(
    ctx: JobContext,
    scoring: _Scoring,
    plan: ReadPlan,
    counts: ScanCounts,
    chunks: Iterator[TypedChunk],
    out: BinaryIO,
    card: ModelCard,
) -> int:
    rows = 0
    out.write(_header(card, plan.row_id).encode())
    for row_ids, output in scoring.map(_columns(chunk.typed, card, plan.row_id) for chunk in chunks):
        out.write(_format(card, row_ids, output).encode())
        rows += len(output)
        _report(ctx, counts, plan)
    return rows


def _recommend(
    ctx: JobContext, scoring: _Scoring, plan: ReadPlan, counts: ScanCounts, chunks: Iterator[TypedChunk], out: BinaryIO
) -> int:
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
        _report(ctx, counts, plan)
    return users


def _columns(typed: pd.DataFrame, card: ModelCard, row_id: str | None) -> tuple[np.ndarray | None, dict, int]:
    columns = {a.attributeName: typed[a.attributeName].to_numpy() for a in card.features}
    return (typed[row_id].to_numpy() if row_id else None), columns, len(typed)


def _report(ctx: JobContext, counts: ScanCounts, plan: ReadPlan) -> None:
    total = plan.total_rows or ctx.resource.get("rows_total")
    fraction = min(0.98, counts.seen_rows / total) if total else 0.5
    ctx.progress(
        fraction,
        rows_scored=counts.kept_rows,
        rows_with_invalid_values=counts.invalid_rows,
        invalid_row_count=counts.bad_rows.count,
    )


def _header(card: ModelCard, row_id: str | None) -> str:
    first = [row_id] if row_id else []
    if card.model_type == ModelType.BINARY:
        columns = ["bestAnswer", "score"]
    elif card.model_type == ModelType.MULTICLASS:
        columns = list(card.classes or [])
    else:
        columns = ["score"]
    return pd.DataFrame(columns=[*first, *columns]).to_csv(index=False)


def _format(card: ModelCard, row_ids: np.ndarray | None, output: np.ndarray) -> str:
    """Amazon ML's layout: BINARY bestAnswer,score; MULTICLASS a score per class; REGRESSION score."""
    if card.model_type == ModelType.BINARY:
        labels = binary_labels(output, card.classes or ["0", "1"], card.score_threshold)
        frame = pd.DataFrame({"bestAnswer": labels, "score": output})
    elif card.model_type == ModelType.MULTICLASS:
        frame = pd.DataFrame(output, columns=card.classes)
    else:
        frame = pd.DataFrame({"score": output})
    if row_ids is not None:
        frame.insert(0, "row_id", row_ids)
    return frame.to_csv(index=False, header=False, float_format="%.10g")


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _base(uri: str) -> str:
    name = PurePosixPath(uri.rstrip("/")).name
    return name[:-3] if name.endswith(".gz") else name


# --- scoring, in this process or in a pool ---

_process_scorer: Scorer | None = None


def _init_process(settings: Settings, model: Mapping[str, Any]) -> None:
    # A process of its own opens its own registry (the worker's cannot be shared across processes).
    from mlsvc.registry.mlflow_registry import MlflowRegistry

    global _process_scorer
    _process_scorer = Scorer(ModelCard.from_resource(model), MlflowRegistry(settings).load(ArtifactRef.of(model)))


def _score_in_process(columns: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    assert _process_scorer is not None
    return _process_scorer.outputs(columns, n_rows)


class _Scoring:
    """Scores chunks in order: here when this worker has one core, else in a pool of processes that each load
    the model once, with a bounded number of chunks in flight. A recommender answers whole chunks of users
    itself, fast enough in this process."""

    def __init__(
        self, settings: Settings, registry: ModelRegistry, model: Mapping[str, Any], card: ModelCard | None
    ) -> None:
        self.processes = max(1, settings.batch_processes)
        self.pool: ProcessPoolExecutor | None = None
        self.scorer: Scorer | None = None
        self.recommender: Any = None
        self.user_column: str | None = None
        if card is None:
            self.recommender = registry.load(ArtifactRef.of(model))
            self.user_column = model["roles"]["user"]
        elif self.processes > 1:
            # Each scoring process loads (and verifies) the model itself; checking here first gives a refused
            # load its own message instead of a broken process pool.
            registry.verify(ArtifactRef.of(model))
            self.pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process,
                initargs=(settings, dict(model)),
            )
        else:
            self.scorer = Scorer(card, registry.load(ArtifactRef.of(model)))

    def __enter__(self) -> _Scoring:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def map(
        self, chunks: Iterator[tuple[np.ndarray | None, dict, int]]
    ) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
        if self.scorer is not None:
            for row_ids, columns, n in chunks:
                yield row_ids, self.scorer.outputs(columns, n)
            return
        assert self.pool is not None
        pending: deque[tuple[np.ndarray | None, Future[np.ndarray]]] = deque()
        for row_ids, columns, n in chunks:
            pending.append((row_ids, self.pool.submit(_score_in_process, columns, n)))
            if len(pending) >= self.processes * IN_FLIGHT_PER_PROCESS:
                ids, future = pending.popleft()
                yield ids, future.result()
        while pending:
            ids, future = pending.popleft()
            yield ids, future.result()
