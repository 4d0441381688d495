"""``Recommender``: a fitted candidate with its id maps, popularity and item attributes, answering by ids.

This is the object registered in MLflow (a picklable scikit-learn estimator) and the one the service calls:

- ``recommend(user_id, k, exclude_seen)`` → ``{"user_id", "items": [{"item_id", "score"}], "cold_start"}``.
  A user the model never saw gets the most popular items (score: the share of users who interacted with the
  item) and ``cold_start: true``.
- ``similar_items(item_id, k)`` → ``{"item_id", "items": [...], "cold_start"}``. An item the model saw is
  answered by the selected model (the most-popular model answers with popular items). An item it never saw
  but that the items frame describes is answered from its attributes (same category first, then shared title
  words and a close price; ties by popularity) with ``cold_start: true``. Any other item is a
  ``MlsvcError(NOT_FOUND)``.
- ``recommend_batch`` and ``recommend_frame`` do the same for many users at once (vectorised for known users);
  ``recommend_frame`` is the long table a batch prediction writes: k rows per user (user_id, rank, item_id,
  score, cold_start).
- ``predict(X)`` is for MLflow's pyfunc signature: X is a DataFrame with the user column (its training name,
  ``user_id``, or the only column); the answer is one string per row, the top-k item ids separated by spaces.
- ``evaluate(X, k)`` scores the model on another interactions frame (e.g. a later period), in the evaluation
  shape of :mod:`mlsvc.recommendation.metrics`.

Scores are the selected model's own (comparable within one answer, not across models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.recommendation.candidates import Candidate, ItemKNN, MostPopular, top_k
from mlsvc.recommendation.interactions import (
    Interactions,
    ItemAttributes,
    build_interactions,
    build_item_attributes,
    id_string,
    id_strings,
)
from mlsvc.recommendation.metrics import evaluation_dict, ranking_metrics

MAX_K = 1000
MAX_BATCH_USERS = 1_000_000


class Recommender(BaseEstimator):
    """Recommendations by user and item ids from a fitted candidate (see the module's docstring)."""

    def __init__(
        self,
        candidate: Candidate | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        roles: Mapping[str, str | None] | None = None,
        item_roles: Mapping[str, str | None] | None = None,
    ) -> None:
        self.candidate = candidate
        self.k = k
        self.exclude_seen = exclude_seen
        self.roles = roles
        self.item_roles = item_roles

    # --- fitting ---

    def fit(self, X: pd.DataFrame, y: Any = None, items: pd.DataFrame | None = None) -> Recommender:
        """Fit a clone of ``candidate`` (item kNN if none) on interactions frame ``X``; ``items`` describes items."""
        data = build_interactions(X, self.roles)
        attributes = build_item_attributes(items, self.item_roles) if items is not None else None
        estimator = clone(self.candidate) if self.candidate is not None else ItemKNN()
        return self.set_fitted(estimator.fit(data.matrix), data, attributes)

    def set_fitted(
        self, estimator: Candidate, data: Interactions, attributes: ItemAttributes | None = None
    ) -> Recommender:
        """Adopt ``estimator``, already fitted on ``data.matrix`` (the loop's refit), with ``data``'s id maps."""
        check_is_fitted(estimator, "seen_")
        if estimator.seen_.shape != (data.n_users, data.n_items):
            raise ValueError(
                f"the estimator was fitted on {estimator.seen_.shape} but the data is {(data.n_users, data.n_items)}"
            )
        self.estimator_ = estimator
        self.users_ = data.user_ids
        self.items_ = data.item_ids
        self.roles_ = data.roles.as_dict()
        self.n_interactions_ = len(data.users)
        users_per_item = np.bincount(estimator.seen_.indices, minlength=data.n_items)
        self.popularity_ = (users_per_item / max(1, data.n_users)).astype(np.float32)
        self.popular_ = np.argsort(-users_per_item, kind="stable")[:MAX_K]
        self.attributes_ = attributes
        if attributes is not None:
            self.catalogue_positions_ = self.items_.get_indexer(attributes.item_ids)  # −1: not in interactions
        return self

    # --- saved state ---

    def __getstate__(self) -> dict[str, Any]:
        """Plain arrays instead of pandas indexes, so the model saves in skops' format (which refuses pandas)."""
        state = dict(super().__getstate__())
        for name in ("users_", "items_"):
            if name in state:
                state[name] = np.asarray(state[name], dtype=str)
        attributes = state.get("attributes_")
        if attributes is not None:
            state["attributes_"] = {
                "item_ids": np.asarray(attributes.item_ids, dtype=str),
                "category": attributes.category,
                "price": attributes.price,
                "text": attributes.text,
                "roles": attributes.roles,
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in ("users_", "items_"):
            if name in state:
                state[name] = pd.Index(state[name], dtype=object)
        attributes = state.get("attributes_")
        if isinstance(attributes, dict):
            state["attributes_"] = ItemAttributes(
                **{**attributes, "item_ids": pd.Index(attributes["item_ids"], dtype=object)}
            )
        super().__setstate__(state)

    # --- answers ---

    def recommend(self, user_id: Any, k: int | None = None, exclude_seen: bool | None = None) -> dict[str, Any]:
        """The top-k items for one user (the most popular ones, with ``cold_start``, for an unknown user)."""
        return self.recommend_batch([user_id], k, exclude_seen)[0]

    def recommend_batch(
        self, user_ids: Sequence[Any], k: int | None = None, exclude_seen: bool | None = None
    ) -> list[dict[str, Any]]:
        """``recommend`` for each user id, in order."""
        ids, items, scores, cold = self._lists(user_ids, k, exclude_seen)
        names = self.items_.to_numpy()
        answers = []
        for i, user in enumerate(ids):
            valid = items[i] >= 0
            answers.append(
                {
                    "user_id": user,
                    "cold_start": bool(cold[i]),
                    "items": [
                        {"item_id": str(name), "score": float(score)}
                        for name, score in zip(names[items[i][valid]], scores[i][valid], strict=True)
                    ],
                }
            )
        return answers

    def recommend_frame(
        self, user_ids: Sequence[Any], k: int | None = None, exclude_seen: bool | None = None
    ) -> pd.DataFrame:
        """A long table, k rows per user in input order: user_id, rank (1…k), item_id, score, cold_start."""
        ids, items, scores, cold = self._lists(user_ids, k, exclude_seen)
        rows, ranks = np.nonzero(items >= 0)
        return pd.DataFrame(
            {
                "user_id": np.asarray(ids, dtype=object)[rows],
                "rank": ranks + 1,
                "item_id": self.items_.to_numpy()[items[rows, ranks]],
                "score": scores[rows, ranks].astype(np.float64),
                "cold_start": cold[rows],
            }
        )

    def similar_items(self, item_id: Any, k: int | None = None) -> dict[str, Any]:
        """The k items most like ``item_id`` (see the module's docstring for unknown items)."""
        check_is_fitted(self, "estimator_")
        k = self._check_k(k)
        key = id_string(item_id)
        if key is None:
            raise MlsvcError(ErrorCode.INVALID_REQUEST, "item_id is empty")
        names = self.items_.to_numpy()
        position = self._item_position(key)
        if position is not None:
            items, scores = self.estimator_.similar_items(position, k)
            cold = False
        else:
            items, scores = self._similar_by_attributes(key, k)
            cold = True
        valid = items >= 0
        return {
            "item_id": key,
            "cold_start": cold,
            "items": [
                {"item_id": str(name), "score": float(score)}
                for name, score in zip(names[items[valid]], scores[valid], strict=True)
            ],
        }

    def predict(self, X: pd.DataFrame | pd.Series | Sequence[Any]) -> np.ndarray:
        """For each row's user, the top-k item ids joined by spaces (MLflow's pyfunc entry point)."""
        _, items, _, _ = self._lists(self._user_column(X), None, None)
        names = self.items_.to_numpy()
        return np.array([" ".join(names[row[row >= 0]]) for row in items], dtype=object)

    # --- evaluation on other data ---

    def evaluate(self, X: pd.DataFrame, k: int | None = None) -> dict[str, Any]:
        """NDCG@k and the other ranking metrics of this model's top-k (seen items excluded) on interactions
        ``X`` (read with the training roles), against the most popular items not yet seen."""
        check_is_fitted(self, "estimator_")
        k = self._check_k(k)
        roles = {r: (c if c in X.columns else None) for r, c in self.roles_.items()} | {
            "user": self.roles_["user"],
            "item": self.roles_["item"],
        }
        data = build_interactions(X, roles)
        known_item = self.items_.get_indexer(data.item_ids)
        unknown = np.flatnonzero(known_item < 0)
        columns = np.where(known_item >= 0, known_item, 0)
        columns[unknown] = self.items_.size + np.arange(unknown.size)  # relevant, but never recommendable
        user_pos = self.users_.get_indexer(data.user_ids)
        relevant = sp.csr_matrix(
            (np.ones(len(data.users), np.float32), (data.users, columns[data.items])),
            shape=(data.n_users, self.items_.size + unknown.size),
        )
        relevant.sum_duplicates()
        relevant.data[:] = 1.0
        repeats = self._drop_seen(relevant, user_pos)
        model_lists = self._index_lists(user_pos, k, True, self.estimator_)
        base_lists = self._index_lists(user_pos, k, True, MostPopular().fit(self.estimator_.seen_))
        metrics = ranking_metrics(model_lists, relevant, self.items_.size)
        base = ranking_metrics(base_lists, relevant, self.items_.size)
        cold = int((user_pos[np.diff(relevant.indptr) > 0] < 0).sum())
        notes = list(data.notes)
        if cold:
            notes.append(f"{cold} evaluated users were not in the training data: they got the most popular items")
        if unknown.size:
            notes.append(
                f"{unknown.size} items were not in the training data: they count as relevant but no "
                "model can recommend them"
            )
        if repeats:
            notes.append(f"{repeats} (user, item) pairs were already in the training data and are not counted")
        return evaluation_dict(metrics, base, k, int(relevant.nnz), notes)

    # --- internals ---

    def _check_k(self, k: int | None) -> int:
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
        return int(k)

    def _user_column(self, X: Any) -> list[Any]:
        if isinstance(X, pd.DataFrame):
            for name in (self.roles_["user"], "user_id", "user"):
                if name in X.columns:
                    return X[name].tolist()
            if X.shape[1] == 1:
                return X.iloc[:, 0].tolist()
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST,
                f"no user column: expected '{self.roles_['user']}' or 'user_id' among {list(map(str, X.columns))}",
            )
        if isinstance(X, pd.Series):
            return X.tolist()
        return list(np.asarray(X, dtype=object).ravel())

    def _lists(
        self, user_ids: Sequence[Any], k: int | None, exclude_seen: bool | None
    ) -> tuple[list[str | None], np.ndarray, np.ndarray, np.ndarray]:
        """Ids as read, item indices and scores (users × k, −1 padded), and which users were cold."""
        check_is_fitted(self, "estimator_")
        k = self._check_k(k)
        exclude = self.exclude_seen if exclude_seen is None else bool(exclude_seen)
        if isinstance(user_ids, str | bytes) or not isinstance(user_ids, Sequence | np.ndarray | pd.Series):
            raise MlsvcError(ErrorCode.INVALID_REQUEST, "user_ids must be a list of ids")
        if len(user_ids) > MAX_BATCH_USERS:
            raise MlsvcError(ErrorCode.PAYLOAD_TOO_LARGE, f"at most {MAX_BATCH_USERS:,} users at once")
        ids = list(id_strings(pd.Series(list(user_ids), dtype=object)))
        if any(i is None for i in ids):
            raise MlsvcError(ErrorCode.INVALID_REQUEST, "a user_id is empty")
        positions = self._user_positions(ids)
        items = np.full((len(ids), k), -1, dtype=np.int64)
        scores = np.full((len(ids), k), np.nan, dtype=np.float32)
        warm = positions >= 0
        if warm.any():
            items[warm], scores[warm] = self.estimator_.recommend_many(positions[warm], k, exclude)
        if (~warm).any():
            take = min(k, len(self.popular_))
            items[~warm, :take] = self.popular_[:take]
            scores[~warm, :take] = self.popularity_[self.popular_[:take]]
        return ids, items, scores, ~warm

    def _index_lists(self, positions: np.ndarray, k: int, exclude: bool, ranker: Candidate) -> np.ndarray:
        items = np.full((len(positions), k), -1, dtype=np.int64)
        warm = positions >= 0
        if warm.any():
            items[warm] = ranker.recommend_many(positions[warm], k, exclude)[0]
        take = min(k, len(self.popular_))
        items[~warm, :take] = self.popular_[:take]
        return items

    def _drop_seen(self, relevant: sp.csr_matrix, user_pos: np.ndarray) -> int:
        """Zero the relevant pairs the user already had in training; return how many."""
        seen = self.estimator_.seen_
        rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
        cols = relevant.indices
        users = user_pos[rows]
        known = (users >= 0) & (cols < seen.shape[1])
        hit = np.zeros(len(cols), dtype=bool)
        if known.any():
            hit[known] = np.asarray(seen[users[known], cols[known]]).ravel() > 0
        relevant.data[hit] = 0.0
        relevant.eliminate_zeros()
        return int(hit.sum())

    def _user_positions(self, ids: list[str | None]) -> np.ndarray:
        if len(ids) == 1:
            try:
                return np.array([self.users_.get_loc(ids[0])], dtype=np.int64)
            except KeyError:
                return np.array([-1], dtype=np.int64)
        return self.users_.get_indexer(pd.Index(ids, dtype=object)).astype(np.int64)

    def _item_position(self, key: str) -> int | None:
        try:
            return int(self.items_.get_loc(key))
        except KeyError:
            return None

    def _similar_by_attributes(self, key: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        attributes = self.attributes_
        position = None if attributes is None else attributes.item_ids.get_indexer([key])[0]
        if attributes is None or position is None or position < 0:
            detail = "" if attributes is None else " nor in the item attributes"
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"item '{key}' is not in this model's training data{detail}", {"item_id": key}
            )
        similarity = attributes.similarity(int(position))
        warm = self.catalogue_positions_ >= 0
        warm[position] = False
        scores = np.full(self.items_.size, -np.inf, dtype=np.float64)
        targets = self.catalogue_positions_[warm]
        scores[targets] = similarity[warm] + 1e-6 * self.popularity_[targets] / max(1e-12, self.popularity_.max())
        items, values = top_k(scores[None, :], k)
        return items[0], values[0]
