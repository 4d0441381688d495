"""Benchmark: recommendation at 10,000 users × 5,000 items (about 1 M interactions): time to train each
candidate and the whole loop, the NDCG@10 of each candidate against most-popular, and p50 / p99 of one
real-time recommendation (one user, k = 10) by the selected model against the most-popular model.

Run by hand, not in CI:

    .venv/bin/python bench/recommend_bench.py                          # the full size, about 3 minutes
    .venv/bin/python bench/recommend_bench.py --users 2000 --items 1000 --sessions 6 --budget 30   # a quick look

What it does: draws a synthetic event log with the example datasource's generator
(``datasources/recommendation/make_recommendation.py``: latent styles, categories, Zipf popularity, sessions,
noise) at the size asked, as a frame of string ids, event names and epoch-second timestamps (the numeric
timestamp path). Then, each step timed:

1. ``build_interactions`` (roles inferred from the names) and the leave-last-out split by time;
2. each family's defaults fitted on the training side and scored on every user's held-out last item
   (NDCG@10 and the other metrics; ratios against most-popular);
3. the whole loop, ``train_recommender`` with the time budget given (default: ``default_budget_s``);
4. real time: the loop's winner and a most-popular ``Recommender`` on the same data answer ``recommend(user_id,
   k=10)`` for the same random known users, interleaved call by call, so both see the same machine; p50 / p99
   and their ratio; then unknown users (the cold-start path);
5. the pickled size of the winner (what MLflow stores) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlsvc.recommendation.candidates import FAMILIES, MostPopular, build  # noqa: E402
from mlsvc.recommendation.interactions import build_interactions  # noqa: E402
from mlsvc.recommendation.loop import FAMILY_ORDER, default_budget_s, train_recommender  # noqa: E402
from mlsvc.recommendation.metrics import evaluate_recommendations  # noqa: E402
from mlsvc.recommendation.model import Recommender  # noqa: E402
from mlsvc.recommendation.split import split_interactions  # noqa: E402

GENERATOR = ROOT / "datasources" / "recommendation" / "make_recommendation.py"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_recommendation", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_recommendation"] = module
    spec.loader.exec_module(module)
    return module


def event_frame(gen: Any, users: int, items: int, sessions: float, seed: int) -> pd.DataFrame:
    _, events = gen.generate(n_users=users, n_items=items, sessions_mean=sessions, seed=seed)
    return pd.DataFrame(
        {
            "user_id": gen.user_ids(users)[events.user],
            "item_id": gen.item_ids(items)[events.item],
            "event_type": np.array(gen.EVENTS)[events.event],
            "timestamp": 1_704_067_200 + events.seconds,  # epoch seconds from 2024-01-01
        }
    )


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--sessions", type=float, default=23.0, help="mean visits per user (23: ~1 M events)")
    parser.add_argument("--budget", type=float, default=None, help="the loop's time budget in seconds")
    parser.add_argument("--calls", type=int, default=2_000, help="real-time calls per model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = load_generator()
    started = time.perf_counter()
    frame = event_frame(gen, args.users, args.items, args.sessions, args.seed)
    print(f"generated {len(frame):,} events in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    data = build_interactions(frame)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    holdout = split_interactions(data, seed=args.seed)
    split_s = time.perf_counter() - started
    train = holdout.train.matrix
    print(
        f"interactions: {len(data.users):,} rows, {data.n_users:,} users × {data.n_items:,} items, "
        f"{data.matrix.nnz:,} distinct pairs (density {data.matrix.nnz / data.n_users / data.n_items:.2%}); "
        f"roles {data.roles.as_dict()}"
    )
    print(
        f"build_interactions {build_s:.2f} s; split ({holdout.strategy}) {split_s:.2f} s; "
        f"{holdout.test.nnz:,} users with a held-out last item"
    )

    print("\ncandidates (defaults), fitted on the training side, scored on the held-out last items:")
    print(
        f"{'family':<14} {'fit s':>7} {'score s':>8} {'NDCG@10':>8} {'vs pop':>7} {'hit@10':>7} {'MAP@10':>7} "
        f"{'cover':>6}"
    )
    baseline = None
    for family in FAMILY_ORDER:
        model = build(family, FAMILIES[family].defaults(), args.seed)
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        evaluation = evaluate_recommendations(model, train, holdout.test, k=10)
        score_s = time.perf_counter() - started
        figures = evaluation["metrics"]
        baseline = baseline or evaluation["baseline"]["value"]
        print(
            f"{family:<14} {fit_s:>7.2f} {score_s:>8.2f} {figures['NDCG@10']:>8.4f} "
            f"{figures['NDCG@10'] / baseline:>6.2f}x {figures['hit_rate@10']:>7.3f} {figures['MAP@10']:>7.4f} "
            f"{figures['coverage@10']:>6.1%}"
        )
        del model

    budget = args.budget if args.budget is not None else default_budget_s(len(data.users), data.n_items)
    print(f"\nthe whole loop, budget {budget:.0f} s:")
    started = time.perf_counter()
    outcome = train_recommender(frame, None, k=10, seed=args.seed, budget_s=budget)
    loop_s = time.perf_counter() - started
    validated = [row for row in outcome.leaderboard if row["validation_score"] is not None]
    skipped = [row for row in outcome.leaderboard if row["validation_score"] is None]
    print(
        f"train_recommender {loop_s:.1f} s (search {outcome.search_s:.1f} s, refit {outcome.refit_s:.1f} s); "
        f"{len(validated)} configs validated, {len(skipped)} skipped; selected {outcome.selected} "
        f"{validated[0]['params']}"
    )
    for row in validated[:6]:
        print(
            f"  {row['candidate']:<16} NDCG@10 {row['validation_score']:.4f}  fit {row['fit_time_s']:.2f} s  "
            f"{row['params']}"
        )
    print(f"holdout: {outcome.evaluation['vs_baseline']}")

    winner = outcome.model
    popular = Recommender(MostPopular(), k=10).set_fitted(MostPopular().fit(data.matrix), data)
    rng = np.random.default_rng(args.seed)
    users = data.user_ids.to_numpy()[rng.integers(0, data.n_users, args.calls)]
    winner.recommend(users[0])  # builds the id lookup table once, as the first request of a served model does
    popular.recommend(users[0])
    times: dict[str, list[float]] = {"winner": [], "most_popular": [], "cold": []}
    for i, user in enumerate(users):
        for name, model in (("winner", winner), ("most_popular", popular)):
            started = time.perf_counter()
            model.recommend(user, k=10)
            times[name].append(time.perf_counter() - started)
        started = time.perf_counter()
        winner.recommend(f"new-user-{i}", k=10)
        times["cold"].append(time.perf_counter() - started)
    print(f"\nreal time, recommend(user_id, k=10), {args.calls:,} calls each, interleaved:")
    for name, samples in times.items():
        label = {
            "winner": f"winner ({outcome.selected})",
            "most_popular": "most-popular",
            "cold": "winner, unknown users",
        }[name]
        print(f"  {label:<28} p50 {percentile_ms(samples, 50):6.3f} ms   p99 {percentile_ms(samples, 99):6.3f} ms")
    ratio50 = np.percentile(times["winner"], 50) / np.percentile(times["most_popular"], 50)
    ratio99 = np.percentile(times["winner"], 99) / np.percentile(times["most_popular"], 99)
    print(f"  winner / most-popular: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x")
    print(
        f"\npickled winner {len(pickle.dumps(winner)) / 2**20:.1f} MiB; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
