"""Attribute importances: how much the held-out score drops when an attribute's values are shuffled, measured on a
row sample and within a time allowance."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsvc.resources import ModelType
from mlsvc.training.data import TrainingData, sample
from mlsvc.training.loop import predict_output
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, selection_score

IMPORTANCE_ROWS = 2000
MIN_IMPORTANCE_ROWS = 200
REPEATS = 3


@dataclass
class Importances:
    """Each attribute's importance, most important first (empty when skipped), and what was cut to afford them."""

    ranked: list[dict[str, Any]]
    note: str | None = None


@dataclass
class _Plan:
    rows: TrainingData
    repeats: int
    baseline: np.ndarray


def attribute_importances(
    pipeline: Any,
    model_type: ModelType,
    n_classes: int,
    holdout: TrainingData,
    seed: int,
    allowance_s: float = math.inf,
) -> Importances:
    """Permutation importance of every attribute on at most ``IMPORTANCE_ROWS`` held-out rows, ending within
    ``allowance_s``: with fewer shuffles or fewer rows when the full measure would not fit, skipped when even that
    would not (one measure is a prediction of the sample per attribute and shuffle)."""
    deadline = time.monotonic() + allowance_s
    rows = sample(holdout, IMPORTANCE_ROWS, seed)
    if model_type == ModelType.BINARY and len(np.unique(rows.y)) < 2:
        return Importances([])  # one class: no AUC to drop
    plan = _plan(pipeline, model_type, n_classes, rows, seed, deadline)
    if isinstance(plan, str):
        return Importances([], plan)
    ranked = _measure(pipeline, model_type, n_classes, plan, seed, deadline)
    if isinstance(ranked, int):
        n = rows.X.shape[1]
        return Importances(
            [], f"attribute importances were skipped (time ran out after {ranked:,} of {n:,} attributes)"
        )
    cut = plan.repeats < REPEATS or len(plan.rows.X) < len(rows.X)
    note = f"attribute importances were measured on {len(plan.rows.X):,} rows with {plan.repeats} shuffle(s) each"
    return Importances(ranked, note if cut else None)


def _plan(
    pipeline: Any, model_type: ModelType, n_classes: int, rows: TrainingData, seed: int, deadline: float
) -> _Plan | str:
    """The rows and shuffles that fit before ``deadline``, timed on the sample itself (a wide table costs per
    prediction, a tall one per row, so fewer shuffles come first, then fewer rows, timed again); or why none fit."""
    n_attributes = rows.X.shape[1]
    for attempt in range(2):
        started = time.monotonic()
        baseline = predict_output(pipeline, model_type, rows.X, n_classes)
        per_call = max(time.monotonic() - started, 1e-6)
        room = deadline - time.monotonic()
        for repeats in (REPEATS, 1):
            if n_attributes * repeats * per_call <= room:
                return _Plan(rows, repeats, baseline)
        # A sample a little smaller than the time allows, for the timing's noise.
        fewer = int(len(rows.X) * 0.8 * room / (n_attributes * per_call))
        if attempt or fewer < MIN_IMPORTANCE_ROWS:
            break
        rows = sample(rows, fewer, seed)
    return (
        f"attribute importances were skipped ({n_attributes:,} attributes at {per_call:.2g} s a measure would take "
        f"about {n_attributes * per_call:,.0f} s; {max(0.0, room):.1f} s were left)"
    )


def _measure(
    pipeline: Any, model_type: ModelType, n_classes: int, plan: _Plan, seed: int, deadline: float
) -> list[dict[str, Any]] | int:
    """The importances, most important first; or, when ``deadline`` passed first, how many attributes were done."""
    y = plan.rows.y
    sign = 1.0 if HIGHER_IS_BETTER[SELECTION_METRIC[model_type]] else -1.0
    base = selection_score(model_type, y, plan.baseline)
    rng = np.random.default_rng(seed)
    X = plan.rows.X.copy()
    found = []
    for j, name in enumerate(X.columns):
        if time.monotonic() > deadline:
            return j
        original = X.iloc[:, j].to_numpy(copy=True)
        drops = []
        for _ in range(plan.repeats):
            X.iloc[:, j] = original[rng.permutation(len(original))]
            shuffled = selection_score(model_type, y, predict_output(pipeline, model_type, X, n_classes))
            drops.append(sign * (base - shuffled))
        X.iloc[:, j] = original
        found.append({"attribute": str(name), "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(found, key=lambda item: -item["importance"])
