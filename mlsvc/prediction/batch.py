"""The batch prediction job: stream the input in chunks, score them (in parallel processes when the worker has
cores to spare), write gzipped CSV in Amazon ML's layout under temporary names, and publish with a manifest last."""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlsvc.config import Settings
from mlsvc.datasources.job import read_layout
from mlsvc.datasources.rearrangement import needs_row_count
from mlsvc.datasources.scan import ScanCounts, count_rows, scan
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectInfo, ObjectStore
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.resources import Attribute, AttributeType, ModelType, Rearrangement, Schema, Splitting
from mlsvc.training.data import schema_for_model

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext

log = logging.getLogger("mlsvc.batch")
IN_FLIGHT_PER_PROCESS = 2  # chunks queued per scoring process: enough to keep it busy, bounded memory


@dataclass
class Plan:
    """What to read and how: the files, their columns, the typing schema, the split and the row id column."""

    files: list[ObjectInfo]
    names_by_file: dict[str, list[str]]
    schema: Schema
    splitting: Splitting | None
    total_rows: int | None
    row_id: str | None


def run(ctx: JobContext) -> Mapping[str, Any]:
    bp = ctx.resource
    model = ctx.store.get("model", bp["model_id"])
    if model["status"] != "COMPLETED":
        raise MlsvcError(ErrorCode.NOT_READY, f"model '{model['id']}' is {model['status']}, not COMPLETED")
    recommending = model["model_type"] == ModelType.RECOMMENDATION.value
    if recommending:
        features = [Attribute(attributeName=model["roles"]["user"], attributeType=AttributeType.CATEGORICAL)]
    else:
        card = ModelCard.from_resource(model)
        features = card.features
    plan = _plan(ctx, bp, features)
    prefix = _join(bp["output_uri"], "batch-prediction")
    staging = _join(prefix, ".staging", bp["id"], f"attempt-{ctx.claim.attempt}")
    _discard_earlier_attempts(ctx.storage, _join(prefix, ".staging", bp["id"]))
    counts = ScanCounts()
    outputs: list[dict[str, Any]] = []
    with _Scoring(ctx.settings, model, None if recommending else card) as scoring:
        for info in plan.files:
            final = _join(prefix, "result", f"{bp['id']}-{_base(info.uri)}.gz")
            temporary = _join(staging, f"{_base(info.uri)}.gz")
            if recommending:
                rows = _recommend_file(
                    ctx, scoring.recommender, plan, info, counts, temporary, features[0].attributeName
                )
            else:
                rows = _score_file(ctx, scoring, plan, info, counts, temporary, card)
            outputs.append({"input": info.uri, "output": final, "staged": temporary, "rows": rows})
    manifest_uri = _join(prefix, f"{bp['id']}.manifest")
    _publish(ctx.storage, outputs, manifest_uri, _join(staging, "manifest"))
    _discard_earlier_attempts(ctx.storage, _join(prefix, ".staging", bp["id"]))
    return {
        "rows_total": counts.seen_rows,
        "rows_scored": sum(o["rows"] for o in outputs),
        "rows_with_invalid_values": counts.invalid_rows,
        "invalid_row_count": counts.bad_rows.count,
        "invalid_examples": counts.bad_rows.examples,
        "outputs": [{"input": o["input"], "output": o["output"], "rows": o["rows"]} for o in outputs],
        "manifest_uri": manifest_uri,
    }


def _plan(ctx: JobContext, bp: Mapping[str, Any], features: list[Attribute]) -> Plan:
    storage = ctx.storage
    if bp.get("datasource_id"):
        ds = ctx.store.get("datasource", bp["datasource_id"])
        ds_schema = Schema.model_validate(ds["schema"])
        schema = schema_for_model(ds_schema, features, ds["id"])
        files = [storage.stat(uri) for uri in ds["files"]]
        splitting = Rearrangement.model_validate(ds["rearrangement"]).splitting if ds.get("rearrangement") else None
        row_id = ds_schema.rowId
    else:
        files = storage.list_data_files(bp["data_uri"])
        row_id = bp.get("row_id")
        extra = [Attribute(attributeName=row_id, attributeType=AttributeType.CATEGORICAL)] if row_id else []
        schema = Schema(
            attributes=[*features, *[a for a in extra if a.attributeName not in _names(features)]], rowId=row_id
        )
        splitting = None
    layout = read_layout(storage, files, schema)
    limit = ctx.settings.max_record_bytes
    total = count_rows(storage, files, layout.names_by_file, schema, limit) if needs_row_count(splitting) else None
    return Plan(layout.files, layout.names_by_file, schema, splitting, total, row_id)


def _names(attributes: list[Attribute]) -> set[str]:
    return {a.attributeName for a in attributes}


def _score_file(
    ctx: JobContext,
    scoring: _Scoring,
    plan: Plan,
    info: ObjectInfo,
    counts: ScanCounts,
    temporary: str,
    card: ModelCard,
) -> int:
    rows = 0
    with ctx.storage.open_write(temporary) as out:
        out.write(_header(card, plan.row_id).encode())
        chunks = scan(
            ctx.storage,
            [info],
            {info.uri: plan.names_by_file[info.uri]},
            plan.schema,
            plan.splitting,
            plan.total_rows,
            counts,
            keep_invalid=True,
            max_record_bytes=ctx.settings.max_record_bytes,
        )
        for row_ids, output in scoring.map(_columns(chunk.typed, card, plan.row_id) for chunk in chunks):
            out.write(_format(card, row_ids, output).encode())
            rows += len(output)
            _report(ctx, counts, plan)
    return rows


def _recommend_file(
    ctx: JobContext,
    recommender: Any,
    plan: Plan,
    info: ObjectInfo,
    counts: ScanCounts,
    temporary: str,
    user_column: str,
) -> int:
    """Top-k items for each user of the file, once per user, in order of first appearance: k rows per user."""
    seen: set[str] = set()
    users = 0
    with ctx.storage.open_write(temporary) as out:
        out.write(b"user_id,rank,item_id,score,cold_start\n")
        chunks = scan(
            ctx.storage,
            [info],
            {info.uri: plan.names_by_file[info.uri]},
            plan.schema,
            plan.splitting,
            plan.total_rows,
            counts,
            keep_invalid=True,
            max_record_bytes=ctx.settings.max_record_bytes,
        )
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


def _report(ctx: JobContext, counts: ScanCounts, plan: Plan) -> None:
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
        negative, positive = card.classes or ["0", "1"]
        threshold = 0.5 if card.score_threshold is None else card.score_threshold
        frame = pd.DataFrame({"bestAnswer": np.where(output >= threshold, positive, negative), "score": output})
    elif card.model_type == ModelType.MULTICLASS:
        frame = pd.DataFrame(output, columns=card.classes)
    else:
        frame = pd.DataFrame({"score": output})
    if row_ids is not None:
        frame.insert(0, "row_id", row_ids)
    return frame.to_csv(index=False, header=False, float_format="%.10g")


def _publish(storage: ObjectStore, outputs: list[dict[str, Any]], manifest_uri: str, manifest_staging: str) -> None:
    """Results under their final names first, the manifest last: a reader that finds the manifest finds
    every file it lists whole."""
    with storage.open_write(manifest_staging) as out:
        out.write(json.dumps({o["input"]: o["output"] for o in outputs}, indent=2).encode())
    for o in outputs:
        storage.publish(o["staged"], o["output"])
    storage.publish(manifest_staging, manifest_uri)


def _discard_earlier_attempts(storage: ObjectStore, staging_root: str) -> None:
    """A retried job starts clean: whatever an earlier attempt staged is removed (best effort)."""
    try:
        leftovers = storage.list_data_files(staging_root + "/")
    except MlsvcError:
        return
    for info in leftovers:
        try:
            storage.delete(info.uri)
        except MlsvcError:
            log.warning("could not remove %s", info.uri)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _base(uri: str) -> str:
    name = PurePosixPath(uri.rstrip("/")).name
    return name[:-3] if name.endswith(".gz") else name


# --- scoring, in this process or in a pool ---

_process_scorer: Scorer | None = None


def _init_process(settings: Settings, model: Mapping[str, Any]) -> None:
    global _process_scorer
    _process_scorer = Scorer(ModelCard.from_resource(model), MlflowRegistry(settings).load(model["model_uri"]))


def _score_in_process(columns: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    assert _process_scorer is not None
    return _process_scorer.outputs(columns, n_rows)


class _Scoring:
    """Scores chunks in order: here when this worker has one core, else in a pool of processes that each load
    the model once, with a bounded number of chunks in flight."""

    def __init__(self, settings: Settings, model: Mapping[str, Any], card: ModelCard | None) -> None:
        self.processes = max(1, settings.batch_processes)
        self.pool: ProcessPoolExecutor | None = None
        self.scorer: Scorer | None = None
        self.recommender: Any = None
        if card is None:  # a recommender answers whole chunks of users itself, fast enough in this process
            self.recommender = MlflowRegistry(settings).load(model["model_uri"])
        elif self.processes > 1:
            self.pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process,
                initargs=(settings, dict(model)),
            )
        else:
            self.scorer = Scorer(card, MlflowRegistry(settings).load(model["model_uri"]))

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
