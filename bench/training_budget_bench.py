"""Benchmark: does the train / validate / select loop keep its time budget? ``train()`` on the churn and fraud
examples at budgets of 10, 30 and 60 s, run in-process exactly as the model job runs it.

Run by hand, not in CI:

    .venv/bin/python bench/training_budget_bench.py                          # both datasets, 10 / 30 / 60 s
    .venv/bin/python bench/training_budget_bench.py --datasets churn --budgets 10
    .venv/bin/python bench/training_budget_bench.py --datasets fraud --budgets 30 --profile   # plus cProfile

What it does:

- Loads each dataset once, typed as training types it: ``pd.read_csv(dtype=str, keep_default_na=False)``, then
  ``coerce_frame`` with the schema file beside the CSV, the rows that have a target, and ``_encode_target``.
- Then, as ``mlsvc/training/job.py`` does: ``split_holdout(data, 0.2, seed=0)``, the recipe
  ``merge_recipe(default_recipe(features, cardinality of the fit rows), None, features)``, and
  ``train(fit, recipe, seed=0, budget_s=B, n_jobs=1)``.
- The process's native thread pools get one thread each (OMP/OPENBLAS/MKL_NUM_THREADS=1 unless set), as a job
  worker of ``mlsvc serve`` with the default MLSVC_WORKERS=2 gets on this 2-core machine.
- Reports the wall time of ``train()`` against the budget (the issue's bar: at most 1.10), the search / refit
  split the Outcome gives, the selected candidate and its validation score, and the score of the refit model on
  the held-out 20 % (the job's evaluation). The selection metric is BinaryAUC for both examples.
- Watches the search without changing it: ``Search._validate`` is wrapped in this process only, to record when
  each candidate started and ended on the search's clock, and what the search estimated it would cost. So a run
  over budget shows which candidate or which refit ran past the budget, and by how much.
- ``--profile`` runs each train() under cProfile (its wall time is then inflated by the profiler) and prints the
  functions with the most cumulative time.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlsvc.datasources.values import coerce_frame  # noqa: E402
from mlsvc.resources import Schema  # noqa: E402
from mlsvc.training.data import TrainingData, _encode_target, split_holdout  # noqa: E402
from mlsvc.training.job import HOLDOUT_FRACTION, _cardinality  # noqa: E402
from mlsvc.training.loop import Search, predict_output, train  # noqa: E402
from mlsvc.training.metrics import selection_score  # noqa: E402
from mlsvc.training.recipe import default_recipe, merge_recipe  # noqa: E402

DATASETS = {"churn": ROOT / "datasources" / "churn.csv", "fraud": ROOT / "datasources" / "fraud.csv.gz"}
BAR = 1.10


def load(path: Path) -> TrainingData:
    """The CSV typed as the training job types it, with its target encoded."""
    schema = Schema.model_validate_json(path.with_name(path.name + ".schema").read_text())
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    typed, _ = coerce_frame(raw, schema)
    target = schema.targetAttributeName
    assert target is not None
    raw_y = raw[target].str.strip()
    has_target = (raw_y != "").to_numpy() & typed[target].notna().to_numpy()
    features = schema.feature_attributes()
    X = typed.loc[has_target, [a.attributeName for a in features]].reset_index(drop=True)
    return _encode_target(X, raw_y[has_target].reset_index(drop=True), schema.attribute(target), None, features)


@dataclass
class Span:
    """One candidate validation on the search's clock."""

    key: str
    rung: int
    rows: int
    folds: int
    started: float
    ended: float
    estimate: float | None  # what the search expected it to take, from its family's seconds per row so far


class Watch:
    """Records every ``Search._validate`` call of the runs in this process (the loop itself is unchanged)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.search: Search | None = None
        original = Search._validate
        watch = self

        def validate(search: Search, config: Any, rung: int, rows: int, last: bool, deadline: float) -> Any:
            watch.search = search
            per_row = search._seconds_per_row.get(config.family.name)
            folds = search._folds(rows, last)
            estimate = per_row * rows * folds if per_row is not None else None
            started = search.clock.elapsed
            trial = original(search, config, rung, rows, last, deadline)
            watch.spans.append(Span(config.key, rung + 1, rows, folds, started, search.clock.elapsed, estimate))
            return trial

        Search._validate = validate  # type: ignore[method-assign]

    def reset(self) -> None:
        self.spans = []
        self.search = None


def run_one(name: str, data: TrainingData, budget: float, watch: Watch, profile: bool) -> dict[str, Any]:
    fit, holdout = split_holdout(data, HOLDOUT_FRACTION, 0)
    recipe = merge_recipe(default_recipe(data.features, _cardinality(fit.X)), None, data.features)
    watch.reset()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    outcome = train(fit, recipe, seed=0, budget_s=budget, n_jobs=1)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    output = predict_output(outcome.pipeline, data.model_type, holdout.X, len(data.classes or []))
    holdout_score = selection_score(data.model_type, holdout.y, output)
    search = watch.search
    # The search's own figure for the refit: its seconds per row of each refitted family, times every fit row.
    refit_estimate = None
    if search is not None:
        keys = outcome.selected.removeprefix("ensemble of ").split(", ")
        per_row = [search._seconds_per_row.get(key.split("#")[0]) for key in keys]
        if all(p is not None for p in per_row):
            refit_estimate = sum(per_row) * len(fit.X)
    result = {
        "dataset": name,
        "budget": budget,
        "wall": wall,
        "ratio": wall / budget,
        "search": outcome.search_s,
        "refit": outcome.refit_s,
        "selected": outcome.selected,
        "metric": outcome.metric,
        "validation": outcome.validation_score,
        "holdout": holdout_score,
        "rows": len(fit.X),
        "holdout_rows": len(holdout.X),
        "validated": len(watch.spans),
        "skipped": len({c.key for c, _, _ in search.skipped} - {s.key for s in watch.spans}) if search else 0,
        "rungs": max((s.rung for s in watch.spans), default=0),
        "spans": list(watch.spans),
        "refit_estimate": refit_estimate,
        "skipped_list": list(search.skipped) if search else [],
    }
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        result["profile"] = text.getvalue()
    return result


def describe(r: dict[str, Any]) -> str:
    """Where the time went against the budget: the search's last candidates and the refit."""
    budget, spans = r["budget"], r["spans"]
    lines = []
    last_rung = max((s.rung for s in spans), default=0)
    finals = [s for s in spans if s.rung == last_rung]
    lines.append(
        f"    plan: {r['validated']} validations on {r['rungs']} rungs, {r['skipped']} candidates never "
        f"validated; last rung: {len(finals)} candidates on {finals[0].rows if finals else 0} rows "
        f"x {finals[0].folds if finals else 0} folds"
    )
    late = sorted(spans, key=lambda s: -(s.ended - s.started))[:3]
    for s in sorted(late, key=lambda s: s.started):
        est = f"estimated {s.estimate:.1f} s" if s.estimate is not None else "no estimate (first of its family)"
        lines.append(
            f"    longest: {s.key:<28} rung {s.rung} {s.rows:>6} rows x{s.folds}: {s.started:6.1f} -> "
            f"{s.ended:6.1f} s ({s.ended - s.started:5.1f} s; {est})"
        )
    search_end = spans[-1].ended if spans else 0.0
    est = f"{r['refit_estimate']:.1f} s" if r["refit_estimate"] is not None else "n/a"
    lines.append(
        f"    last validation ended at {search_end:.1f} s ({search_end / budget:.2f} of the budget); "
        f"selection + refit from {r['search']:.1f} s took {r['refit']:.1f} s (the search's estimate for "
        f"the refit: {est}); over budget by {max(0.0, r['wall'] - budget):.1f} s"
    )
    return "\n".join(lines)


def timeline(r: dict[str, Any]) -> str:
    lines = [
        f"      {s.started:6.2f} -> {s.ended:6.2f} s  rung {s.rung}  {s.rows:>6} rows x{s.folds}  {s.key}"
        + (f"  (estimated {s.estimate:.2f} s)" if s.estimate is not None else "")
        for s in r["spans"]
    ]
    lines += [f"      skipped at rung {rung + 1}: {config.key}: {reason}" for config, rung, reason in r["skipped_list"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[10.0, 30.0, 60.0])
    parser.add_argument("--profile", action="store_true", help="run each train() under cProfile and print it")
    parser.add_argument("--timeline", action="store_true", help="print every validation and every skip")
    args = parser.parse_args()

    print(
        f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, n_jobs=1; cpus {os.cpu_count()}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    watch = Watch()
    results = []
    for name in args.datasets:
        started = time.perf_counter()
        data = load(DATASETS[name])
        positives = int(data.y.sum())
        print(
            f"\n{name}: {len(data.X)} rows, {len(data.features)} features, {data.model_type.value}, "
            f"{positives} positive ({positives / len(data.y):.1%}); typed in {time.perf_counter() - started:.2f} s",
            flush=True,
        )
        for budget in args.budgets:
            r = run_one(name, data, budget, watch, args.profile)
            results.append(r)
            flag = "" if r["ratio"] <= BAR else f"   <-- over the {BAR:.2f} bar"
            print(f"  budget {budget:4.0f} s: train() {r['wall']:6.1f} s = {r['ratio']:.3f} x budget{flag}", flush=True)
            print(describe(r), flush=True)
            if args.timeline:
                print(timeline(r), flush=True)
            if args.profile:
                print(r["profile"])

    print(
        f"\n{'dataset':<8}{'budget s':>9}{'wall s':>8}{'ratio':>7}{'search s':>10}{'refit s':>9}{'valid.':>8}"
        f"{'holdout':>9}  selected   (load average now {os.getloadavg()[0]:.1f})"
    )
    for r in results:
        print(
            f"{r['dataset']:<8}{r['budget']:>9.0f}{r['wall']:>8.1f}{r['ratio']:>7.3f}{r['search']:>10.1f}"
            f"{r['refit']:>9.1f}{r['validation']:>8.4f}{r['holdout']:>9.4f}  {r['selected']}"
        )
    print(
        f"scores are {results[0]['metric'] if results else ''}: validation as the search measured it (k-fold or "
        f"holdout inside the fit rows), holdout on the 20 % the job holds out; bar: wall / budget <= {BAR:.2f}"
    )
    worst = max(results, key=lambda r: r["ratio"]) if results else None
    if worst:
        print(
            f"worst ratio {worst['ratio']:.3f} ({worst['dataset']}, {worst['budget']:.0f} s): "
            f"{'within' if worst['ratio'] <= BAR else 'MISSES'} the bar"
        )


if __name__ == "__main__":
    main()
