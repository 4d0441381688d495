"""The recommendation train / validate / select loop: a budgeted search over candidate configs by NDCG@k.

Two nested leave-last-out splits (by time when there are timestamps, else random per user, see ``split``):

1. the *holdout*: each user's last item, kept away from the search and used once, at the end, for the
   evaluation of the selected config (refit on everything else) against most-popular;
2. the *validation*: each user's last item of what remains; every config is fitted on the rest and ranked by
   NDCG@k on it.

Search: the defaults of every family first (most-popular, the baseline, is always validated), then configs
drawn from the families' spaces, more of them from the families that did best on their defaults. A config
whose family's last fit says it would not finish within the time budget (keeping time for the two final fits)
is skipped and shown as such on the leaderboard. The winner is refit on every interaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.recommendation.candidates import FAMILIES, Candidate, Params, build
from mlsvc.recommendation.interactions import Interactions, build_interactions, build_item_attributes
from mlsvc.recommendation.metrics import METRICS, evaluate_recommendations, label, score_ranker
from mlsvc.recommendation.model import Recommender
from mlsvc.recommendation.split import Split, split_interactions

DEFAULT_K = 10
MAX_CONFIGS = 24
FAMILY_ORDER = ("most_popular", "item_knn", "svd", "ease")  # cheapest first: defaults run in this order

Progress = Callable[[float, str], None]


def default_budget_s(n_interactions: int, n_items: int) -> float:
    """30 s for small data, growing with interactions and (for EASE's inversion) items, up to 15 minutes."""
    return float(min(900.0, max(30.0, n_interactions / 10_000 + (n_items / 1_000) ** 3 / 2)))


@dataclass
class RecommenderOutcome:
    """The selected config refit on all interactions, its validation and holdout figures, and every config tried."""

    model: Recommender
    metric: str
    validation_score: float
    selected: str
    leaderboard: list[dict[str, Any]]
    evaluation: dict[str, Any]
    split: str
    search_s: float
    refit_s: float
    notes: list[str] = field(default_factory=list)


@dataclass
class _Trial:
    key: str
    family: str
    params: Params
    score: float | None = None
    metrics: dict[str, float] | None = None
    fit_s: float = 0.0
    predict_s: float = 0.0
    status: str = "finalist"


class _Search:
    def __init__(
        self,
        split: Split,
        k: int,
        seed: int,
        budget_s: float,
        families: list[str],
        max_configs: int,
        on_progress: Progress,
    ) -> None:
        self.split, self.k, self.seed = split, k, seed
        self.budget_s, self.families, self.max_configs = budget_s, families, max_configs
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self.trials: list[_Trial] = []
        self.cost: dict[str, float] = {}  # the family's last fit + validation seconds
        self.train = split.train.matrix

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self) -> list[_Trial]:
        for family in self.families:
            self._try(f"{family}#0", family, FAMILIES[family].defaults(), first=True)
        rng = np.random.default_rng(self.seed)
        seen = {(t.family, repr(sorted(t.params.items()))) for t in self.trials}
        draws = dict.fromkeys(self.families, 0)
        stalls = 0
        while len(self.trials) < self.max_configs and stalls < 50 and self.elapsed < self.budget_s:
            picked = self._next_family(rng)
            if picked is None:
                break
            family = picked
            params = FAMILIES[family].sample(rng)
            signature = (family, repr(sorted(params.items())))
            if signature in seen:
                stalls += 1
                continue
            seen.add(signature)
            draws[family] += 1
            self._try(f"{family}#{draws[family]}", family, params, first=False)
        return self.trials

    def _next_family(self, rng: np.random.Generator) -> str | None:
        """A family to sample from, weighted 3 / 2 / 1 by the rank of its best score so far."""
        best: dict[str, float] = {}
        for t in self.trials:
            if t.score is not None and t.family != "most_popular":  # it has nothing to search
                best[t.family] = max(best.get(t.family, -np.inf), t.score)
        ranked = sorted(best, key=lambda f: -best[f])
        if not ranked:
            return None
        weights = np.array([3.0, 2.0] + [1.0] * max(0, len(ranked) - 2))[: len(ranked)]
        return ranked[int(rng.choice(len(ranked), p=weights / weights.sum()))]

    def _try(self, key: str, family: str, params: Params, first: bool) -> None:
        trial = _Trial(key, family, params)
        self.trials.append(trial)
        reason = self._too_costly(family, first)
        if reason:
            trial.status = f"skipped at rung 1: {reason}"
            return
        model = build(family, params, self.seed)
        started = time.perf_counter()
        try:
            model.fit(self.train)
        except (ValueError, MemoryError) as exc:
            trial.status = f"failed: {exc}"
            self.cost[family] = time.perf_counter() - started
            return
        trial.fit_s = time.perf_counter() - started
        started = time.perf_counter()
        figures = score_ranker(model, self.split.test, self.k)
        trial.predict_s = time.perf_counter() - started
        self.cost[family] = trial.fit_s + trial.predict_s
        trial.metrics = {label(m, self.k): figures[m] for m in METRICS}
        trial.score = figures["ndcg"] if np.isfinite(figures["ndcg"]) else None
        best = max((t for t in self.trials if t.score is not None), key=lambda t: t.score or 0.0, default=trial)
        self.on_progress(
            min(0.99, self.elapsed / max(self.budget_s, 1e-9)),
            f"{sum(t.score is not None for t in self.trials)} candidates validated; best "
            f"{label('ndcg', self.k)} {best.score or 0.0:.4f} ({best.key})",
        )

    def _too_costly(self, family: str, first: bool) -> str | None:
        left = self.budget_s - self.elapsed
        if family == "most_popular" or not self.trials:
            return None
        estimate = self.cost.get(family)
        if estimate is None:
            return None if left > 0 and first else "time budget spent"
        best = max((t for t in self.trials if t.score is not None), key=lambda t: t.score or 0.0, default=None)
        reserve = 2.0 * self.cost.get(best.family, 0.0) if best is not None else 0.0
        if estimate + reserve > left:
            return f"would not finish within the time budget (about {estimate:.1f} s)"
        return None


def train_recommender(
    interactions_frame: pd.DataFrame,
    roles: Mapping[str, str | None] | None = None,
    *,
    k: int = DEFAULT_K,
    seed: int = 0,
    budget_s: float | None = None,
    on_progress: Progress | None = None,
    items_frame: pd.DataFrame | None = None,
    item_roles: Mapping[str, str | None] | None = None,
    families: list[str] | None = None,
    max_configs: int = MAX_CONFIGS,
) -> RecommenderOutcome:
    """Search candidate configs on a validation split, select by NDCG@k, evaluate the winner on the holdout
    against most-popular, and refit it on every interaction (see the module's docstring)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"k must be a whole number from 1 to 1000, got {k!r}")
    progress = on_progress or (lambda f, m: None)
    started = time.perf_counter()
    data = build_interactions(interactions_frame, roles)
    attributes = build_item_attributes(items_frame, item_roles) if items_frame is not None else None
    chosen = _families(families)
    budget = float(budget_s if budget_s is not None else default_budget_s(len(data.users), data.n_items))
    holdout = split_interactions(data, seed=seed)
    if holdout.test.nnz == 0:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"no user interacted with two different items ({data.n_users} users, {data.n_items} items): "
            "nothing can be held out to validate recommendations on",
        )
    notes = list(data.notes)
    validation = split_interactions(holdout.train, seed=seed + 1, strategy=holdout.strategy)
    if validation.test.nnz == 0:
        validation = holdout
        notes.append(
            "no user has three different items: configs were selected on the holdout itself, so the "
            "evaluation is optimistic"
        )
    progress(
        0.0,
        f"{len(data.users):,} interactions of {data.n_users:,} users with {data.n_items:,} items; "
        f"{holdout.test.nnz:,} held out and {validation.test.nnz:,} for validation ({holdout.strategy})",
    )
    search = _Search(
        validation,
        k,
        seed,
        budget - (time.perf_counter() - started),
        chosen,
        max_configs,
        lambda f, m: progress(0.9 * f, m),
    )
    trials = search.run()
    scored = [t for t in trials if t.score is not None]
    if not scored:
        reasons = "; ".join(f"{t.key}: {t.status}" for t in trials)
        raise MlsvcError(ErrorCode.INVALID_DATA, f"no candidate could be validated: {reasons}")
    best = max(scored, key=lambda t: t.score or 0.0)  # the first of equals: defaults and cheap families first
    search_s = time.perf_counter() - started
    progress(0.92, f"selected {best.key}; evaluating it on the {holdout.test.nnz:,} held-out interactions")
    evaluated = build(best.family, best.params, seed).fit(holdout.train.matrix)
    evaluation = evaluate_recommendations(
        evaluated,
        holdout.train.matrix,
        holdout.test,
        k,
        notes=[*notes, f"split: {holdout.strategy}", f"selected {best.key} on a validation split before this holdout"],
    )
    progress(0.96, f"refitting {best.key} on all {len(data.users):,} interactions")
    refit_started = time.perf_counter()
    final = build(best.family, best.params, seed).fit(data.matrix)
    model = Recommender(
        candidate=clone(final),
        k=k,
        roles=data.roles.as_dict(),
        item_roles=None if attributes is None else attributes.roles,
    ).set_fitted(final, data, attributes)
    refit_s = time.perf_counter() - refit_started
    progress(1.0, f"{best.key}: {evaluation['vs_baseline']}")
    return RecommenderOutcome(
        model=model,
        metric=label("ndcg", k),
        validation_score=float(best.score or 0.0),
        selected=best.key,
        leaderboard=_leaderboard(trials, best, len(validation.train.users)),
        evaluation=evaluation,
        split=holdout.strategy,
        search_s=search_s,
        refit_s=refit_s,
        notes=notes,
    )


def fit_interactions(data: Interactions, family: str, params: Params | None = None, seed: int = 0) -> Candidate:
    """One candidate of ``family`` (its defaults unless ``params``) fitted on all of ``data``."""
    return build(family, FAMILIES[family].defaults() if params is None else params, seed).fit(data.matrix)


def _families(families: list[str] | None) -> list[str]:
    chosen = list(FAMILY_ORDER) if families is None else list(families)
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST, f"unknown recommender families {unknown}; they are {list(FAMILY_ORDER)}"
        )
    # The baseline is always validated: the leaderboard and the evaluation compare against it.
    return ["most_popular"] + [f for f in FAMILY_ORDER if f in chosen and f != "most_popular"]


def _leaderboard(trials: list[_Trial], best: _Trial, rows: int) -> list[dict[str, Any]]:
    """Validated configs best first, then the ones skipped or failed; the shape of the other loop's rows."""
    validated = sorted((t for t in trials if t.score is not None), key=lambda t: -(t.score or 0.0))
    others = [t for t in trials if t.score is None]
    board = []
    for t in validated + others:
        board.append(
            {
                "candidate": t.key,
                "family": t.family,
                "params": dict(t.params),
                "validation_score": t.score,
                "metrics": t.metrics,
                "rows": rows if t.score is not None else None,
                "rung": 1 if t.score is not None else None,
                "fit_time_s": round(t.fit_s, 4),
                "predict_time_s": round(t.predict_s, 4),
                "status": t.status,
                "selected": t is best,
            }
        )
    return board
