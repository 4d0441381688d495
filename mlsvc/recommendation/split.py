"""Held-out interactions: each user's last item by time (leave-last-out), else one item at random per user.

One item per user is held out: the item whose latest interaction is the user's latest (by timestamp, ties by
row order), or with no timestamps a random one (seeded). Every interaction of the user with that item leaves
the training side, so a held-out item is never "already seen". A user with fewer than ``min_items`` distinct
items (default 2) keeps everything in training and is not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mlsvc.recommendation.interactions import Interactions

LAST_BY_TIME = "leave_last_out_by_time"
RANDOM = "random_per_user"


@dataclass
class Split:
    """Training interactions (same id maps) and the held-out (user, item) pairs as a binary matrix."""

    train: Interactions
    test: sp.csr_matrix  # users × items, 1.0 where held out
    strategy: str

    @property
    def test_users(self) -> np.ndarray:
        """Users with a held-out item, ascending."""
        return np.flatnonzero(np.diff(self.test.indptr)).astype(np.int32)


def split_interactions(data: Interactions, *, seed: int = 0, strategy: str | None = None, min_items: int = 2) -> Split:
    """Hold out one item per user with at least ``min_items`` distinct items: the last by time when ``data`` has
    timestamps (unless ``strategy`` says ``random_per_user``), else a random one drawn with ``seed``."""
    strategy = strategy or (LAST_BY_TIME if data.timestamps is not None else RANDOM)
    if strategy not in (LAST_BY_TIME, RANDOM):
        raise ValueError(f"unknown split strategy {strategy!r}; use {LAST_BY_TIME!r} or {RANDOM!r}")
    if strategy == LAST_BY_TIME and data.timestamps is None:
        raise ValueError("a leave-last-out split by time needs timestamps")
    n_rows = len(data.users)
    keys = data.users.astype(np.int64) * data.n_items + data.items
    position = np.arange(n_rows)
    when = data.timestamps if strategy == LAST_BY_TIME else np.zeros(n_rows)
    assert when is not None  # a split by time without timestamps was refused above
    # Each (user, item) pair's latest row: sort by pair, then time, then row order; take each run's end.
    order = np.lexsort((position, when, keys))
    sorted_keys = keys[order]
    ends = np.flatnonzero(np.r_[sorted_keys[1:] != sorted_keys[:-1], True])
    last = order[ends]  # one row per pair: its latest
    pair_user = data.users[last]
    distinct = np.bincount(pair_user, minlength=data.n_users)
    # Sorted by user, then (time, row order) or a random number: each user's last pair is the one held out.
    if strategy == LAST_BY_TIME:
        by_user = np.lexsort((last, when[last], pair_user))
    else:
        by_user = np.lexsort((np.random.default_rng(seed).random(len(last)), pair_user))
    user_ends = np.flatnonzero(np.r_[pair_user[by_user][1:] != pair_user[by_user][:-1], True])
    chosen = last[by_user[user_ends]]
    chosen = chosen[distinct[data.users[chosen]] >= min_items]
    held_users, held_items = data.users[chosen], data.items[chosen]
    held_keys = np.sort(held_users.astype(np.int64) * data.n_items + held_items)
    in_test = np.isin(keys, held_keys, assume_unique=False)
    test = sp.csr_matrix(
        (np.ones(len(chosen), np.float32), (held_users, held_items)), shape=(data.n_users, data.n_items)
    )
    test.sort_indices()
    return Split(train=data.subset(~in_test), test=test, strategy=strategy)
