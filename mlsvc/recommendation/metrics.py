"""Top-k ranking metrics over users, vectorised, and the evaluation of a recommender against most-popular.

For each evaluated user (one with at least one relevant, i.e. held-out, item) and their top-k list:

- precision@k = hits / k
- recall@k = hits / relevant items
- NDCG@k = Σ hit_j / log2(j + 2) over positions j = 0…k−1, divided by the same sum for an ideal list
  (min(k, relevant) hits at the top)
- MAP@k = Σ precision@(j+1) · hit_j / min(k, relevant)
- hit rate@k = 1 if any hit, else 0

each averaged over the evaluated users; catalogue coverage@k = distinct items recommended to them ÷ items
in the catalogue. Lists shorter than k (padded with −1) count the missing places as misses.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from mlsvc.recommendation.candidates import MostPopular

MODEL_TYPE = "RECOMMENDATION"
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
_LABELS = {
    "precision": "precision",
    "recall": "recall",
    "ndcg": "NDCG",
    "map": "MAP",
    "hit_rate": "hit_rate",
    "coverage": "coverage",
}


class Ranker(Protocol):
    """Anything that ranks items for users by their indices, as the candidates do."""

    def recommend_many(
        self, users: np.ndarray, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...


def label(metric: str, k: int) -> str:
    """The display name of a metric at k, e.g. ``NDCG@10``."""
    return f"{_LABELS[metric]}@{k}"


def hits_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean (users × k): whether each recommended item (−1 = none) is relevant to its row's user."""
    recommended = np.asarray(recommended, dtype=np.int64)
    n_items = relevant.shape[1]
    relevant = relevant.tocsr()
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    relevant_keys = np.sort(rows * n_items + relevant.indices[: relevant.nnz])
    keys = np.arange(len(recommended), dtype=np.int64)[:, None] * n_items + recommended
    if relevant_keys.size == 0:
        return np.zeros(recommended.shape, dtype=bool)
    found = np.searchsorted(relevant_keys, keys)
    found = np.minimum(found, relevant_keys.size - 1)
    return (relevant_keys[found] == keys) & (recommended >= 0)


def ranking_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, n_items: int | None = None) -> dict[str, float]:
    """precision, recall, ndcg, map, hit_rate and coverage of the lists ``recommended`` (users × k item indices,
    −1 padded) against ``relevant`` (a users × items matrix, rows aligned with ``recommended``), and ``users``."""
    recommended = np.asarray(recommended, dtype=np.int64)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be users × k, got shape {recommended.shape}")
    if relevant.shape[0] != recommended.shape[0]:
        raise ValueError(f"{recommended.shape[0]} lists but {relevant.shape[0]} rows of relevant items")
    n_items = relevant.shape[1] if n_items is None else n_items
    k = recommended.shape[1]
    n_relevant = np.diff(relevant.tocsr().indptr)
    users = n_relevant > 0
    if not users.any() or k == 0:
        return dict.fromkeys(METRICS, float("nan")) | {"users": 0}
    hits = hits_matrix(recommended, relevant)[users]
    n_relevant = n_relevant[users].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k).astype(np.int64) - 1]
    hit_count = hits.sum(axis=1)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    shown = recommended[users]
    return {
        "precision": float(np.mean(hit_count / k)),
        "recall": float(np.mean(hit_count / n_relevant)),
        "ndcg": float(np.mean((hits @ discounts) / ideal)),
        "map": float(np.mean((precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k))),
        "hit_rate": float(np.mean(hit_count > 0)),
        "coverage": float(np.unique(shown[shown >= 0]).size / max(1, n_items)),
        "users": int(users.sum()),
    }


def score_ranker(ranker: Ranker, test: sp.csr_matrix, k: int, users: np.ndarray | None = None) -> dict[str, float]:
    """``ranking_metrics`` of a fitted ranker's top-k (seen items excluded) for the users with held-out items."""
    test = test.tocsr()
    users = np.flatnonzero(np.diff(test.indptr)) if users is None else np.asarray(users)
    recommended, _ = ranker.recommend_many(users, k, exclude_seen=True)
    return ranking_metrics(recommended, test[users], test.shape[1])


def _labelled(metrics: dict[str, float], k: int) -> dict[str, float]:
    return {label(m, k): metrics[m] for m in METRICS}


def _sentence(value: float, baseline: float, metrics: dict[str, float], base: dict[str, float], k: int) -> str:
    if not np.isfinite(value) or not np.isfinite(baseline):
        return f"NDCG@{k} is undefined: no user has a held-out item to find."
    head = f"NDCG@{k} {value:.4f} vs {baseline:.4f} for recommending the most popular items not yet seen"
    if baseline > 0:
        ratio = value / baseline
        change = f"{ratio:.1f} times as high" if ratio >= 1 else f"{1 - ratio:.0%} lower (worse than the baseline)"
    else:
        change = "the baseline finds nothing" if value > 0 else "neither finds anything"
    return (
        head + f": {change}; hit rate@{k} {metrics['hit_rate']:.1%} vs {base['hit_rate']:.1%}, catalogue "
        f"coverage {metrics['coverage']:.1%} vs {base['coverage']:.1%}."
    )


def evaluate_recommendations(
    model: Ranker, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10, notes: list[str] | None = None
) -> dict[str, Any]:
    """The evaluation of ``model`` (fitted on ``train``) on held-out ``test`` against most-popular fitted on
    ``train``, in the shape of the other model types' evaluations: model_type, metric (``NDCG@k``), value,
    baseline {name, value, metrics}, vs_baseline, rows (users evaluated), metrics, notes."""
    test = test.tocsr()
    users = np.flatnonzero(np.diff(test.indptr))
    metrics = score_ranker(model, test, k, users)
    base = score_ranker(MostPopular().fit(train), test, k, users)
    return evaluation_dict(metrics, base, k, int(test.nnz), notes)


def evaluation_dict(
    metrics: dict[str, float], base: dict[str, float], k: int, held_out: int, notes: list[str] | None = None
) -> dict[str, Any]:
    """The evaluation shape from a model's ``ranking_metrics`` and most-popular's on the same lists' users."""
    notes = list(notes or [])
    if metrics["users"] == 0:
        notes.append("no user has a held-out interaction: every metric is undefined")
    return _finite(
        {
            "model_type": MODEL_TYPE,
            "metric": label("ndcg", k),
            "value": metrics["ndcg"],
            "k": k,
            "baseline": {
                "name": "most popular items not yet seen",
                "value": base["ndcg"],
                "metrics": _labelled(base, k),
            },
            "vs_baseline": _sentence(metrics["ndcg"], base["ndcg"], metrics, base, k),
            "rows": metrics["users"],
            "held_out_interactions": held_out,
            "metrics": _labelled(metrics, k),
            "notes": notes,
        }
    )


def summary_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The evaluation's figures flat, under names MLflow accepts (``ndcg_at_10``, ``baseline_ndcg_at_10``…)."""
    out: dict[str, float] = {}
    for prefix, figures in (("", evaluation["metrics"]), ("baseline_", evaluation["baseline"]["metrics"])):
        for name, value in figures.items():
            if value is not None:
                out[prefix + name.lower().replace("@", "_at_")] = float(value)
    return out


def _finite(value: Any) -> Any:
    """NaN and ±inf as None, recursively, so the result is plain JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value
