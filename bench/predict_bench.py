"""Benchmark: one record at a time, a fitted churn model's ``predict_proba`` on a 1-row DataFrame against the
compiled path (``mlsvc.prediction.compiled``) on 1-row typed columns.

Run by hand, not in CI:

    .venv/bin/python bench/predict_bench.py                # 2,000 calls per model and path
    .venv/bin/python bench/predict_bench.py --calls 500    # a quick look

What it does: reads ``datasources/churn.csv`` with its schema and types it as training does (``coerce_frame``),
fits on 80% of the rows, with ``make_pipeline`` and the default recipe (one-hot categoricals), three models:
logistic regression, HistGradientBoosting with exactly 300 trees (early stopping off) and a 300-tree random
forest. Each is compiled; the compiled answers on the 20% held out are checked equal to ``predict_output`` (1e-9).
Then, interleaved so that all paths see the same machine at the same moments, each held-out record is scored
alone by: the pipeline with the process's default thread pools, the pipeline limited to one thread (the
stronger baseline on a small, busy machine: OpenMP start-up costs more than one row's work; the limit itself
costs about 0.03 ms a call), and the compiled path. Prints the median and p99 of each in milliseconds and the
ratios pipeline / compiled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController, threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlsvc.datasources.values import coerce_frame  # noqa: E402
from mlsvc.prediction.compiled import CompiledModel, compile_pipeline  # noqa: E402
from mlsvc.resources import AttributeType, ModelType, Schema  # noqa: E402
from mlsvc.training.candidates import BY_NAME  # noqa: E402
from mlsvc.training.data import TrainingData, _encode_target, split_holdout  # noqa: E402
from mlsvc.training.loop import Config, fit_quietly, make_pipeline, predict_output  # noqa: E402
from mlsvc.training.recipe import default_recipe  # noqa: E402

DATA = ROOT / "datasources" / "churn.csv"


def load_churn() -> TrainingData:
    schema = Schema.model_validate_json((DATA.parent / (DATA.name + ".schema")).read_text())
    raw = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    typed, _ = coerce_frame(raw, schema)
    features = schema.feature_attributes()
    X = typed[[a.attributeName for a in features]].reset_index(drop=True)
    target = schema.attribute(schema.targetAttributeName)
    return _encode_target(X, raw[schema.targetAttributeName], target, ModelType.BINARY, features)


def models(data: TrainingData) -> dict[str, Any]:
    cardinality = {
        a.attributeName: int(data.X[a.attributeName].nunique())
        for a in data.features
        if a.attributeType == AttributeType.CATEGORICAL
    }
    recipe = default_recipe(data.features, cardinality)

    def build(family: str, **params: Any) -> Any:
        config = Config(f"{family}#0", BY_NAME[family], BY_NAME[family].defaults(data.model_type) | params)
        return make_pipeline(config, data, recipe, 0, 1)

    hgb = build("hist_gradient_boosting", max_iter=300)
    hgb.set_params(model__early_stopping=False)  # exactly 300 trees
    return {
        "logistic regression": build("linear"),
        "hist gradient boosting": hgb,
        "random forest": build("random_forest", n_estimators=300),
    }


def typed_columns(X: pd.DataFrame, data: TrainingData) -> dict[str, np.ndarray]:
    text = (AttributeType.CATEGORICAL, AttributeType.TEXT)
    return {
        a.attributeName: X[a.attributeName].to_numpy(dtype=object if a.attributeType in text else np.float64)
        for a in data.features
    }


def size(pipeline: Any) -> str:
    model = pipeline.named_steps["model"]
    if hasattr(model, "_predictors"):
        return f"{len(model._predictors)} trees"
    if hasattr(model, "estimators_"):
        depth = max(e.tree_.max_depth for e in model.estimators_)
        return f"{len(model.estimators_)} trees, depth ≤ {depth}"
    return f"{model.coef_.shape[1]} features"


def paths_for(
    pipeline: Any,
    compiled: CompiledModel,
    frames: list[pd.DataFrame],
    records: list[dict[str, np.ndarray]],
    threads: ThreadpoolController,
) -> dict[str, Callable[[int], Any]]:
    def one_thread(i: int) -> Any:
        with threads.limit(limits=1):
            return pipeline.predict_proba(frames[i])

    return {
        "pipeline": lambda i: pipeline.predict_proba(frames[i]),
        "1-thread": one_thread,
        "compiled": lambda i: compiled.predict(records[i], 1),
    }


def measure(paths: dict[str, Callable[[int], Any]], n_rows: int, calls: int) -> dict[str, list[float]]:
    """Milliseconds per call of each path, the paths interleaved call by call."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for path in paths.values():  # warm up each path
        for i in range(20):
            path(i % n_rows)
    for call in range(calls):
        i = call % n_rows
        for name, path in paths.items():
            started = time.perf_counter_ns()
            path(i)
            times[name].append((time.perf_counter_ns() - started) / 1e6)
    return times


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def run(calls: int) -> None:
    data = load_churn()
    fit, held = split_holdout(data, 0.2, 0)
    print(f"churn: {len(data.X)} rows, {len(data.features)} features; fit on {len(fit.X)}, score {len(held.X)}")
    print(f"{calls} single-record calls per path, interleaved\n")
    header = (
        f"{'model':<24}{'size':<26}{'pipeline p50/p99':>18}{'1-thread p50/p99':>18}{'compiled p50/p99':>18}"
        f"{'ratio p50':>11}{'1-thr ratio':>12}"
    )
    rows = []
    threads = ThreadpoolController()
    for name, pipeline in models(fit).items():
        with threadpool_limits(1):
            fit_quietly(pipeline, fit.X, fit.y)
        compiled = compile_pipeline(pipeline, ModelType.BINARY, 2, [a.attributeName for a in fit.features])
        columns = typed_columns(held.X, held)
        expected = predict_output(pipeline, ModelType.BINARY, held.X, 2)
        worst = float(np.max(np.abs(compiled.predict(columns, len(held.X)) - expected)))
        assert worst <= 1e-9, f"{name}: compiled differs from the pipeline by {worst}"

        frames = [held.X.iloc[[i]] for i in range(len(held.X))]
        records = [{c: v[i : i + 1] for c, v in columns.items()} for i in range(len(held.X))]
        paths = paths_for(pipeline, compiled, frames, records, threads)
        times = measure(paths, len(held.X), calls)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = "".join(f"{med[k]:>9.3f}/{p99(times[k]):<8.3f}" for k in paths)
        rows.append(
            f"{name:<24}{size(pipeline):<26}{cells}{med['pipeline'] / med['compiled']:>10.1f}×"
            f"{med['1-thread'] / med['compiled']:>11.1f}×   (max |diff| {worst:.1e})"
        )
        print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
        print(rows[-1], flush=True)
    print("\ntimes in ms; ratio = pipeline median / compiled median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    run(parser.parse_args().calls)


if __name__ == "__main__":
    main()
