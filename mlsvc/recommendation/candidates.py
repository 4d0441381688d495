"""Candidate recommenders on a sparse user × item matrix: most-popular, item kNN, PureSVD and EASE.

Every candidate is a scikit-learn estimator (picklable, ``get_params``/``clone``): ``fit(matrix)`` takes the
users × items CSR matrix of summed interaction weights (``interactions.Interactions.matrix``); users and items
are then addressed by their row and column indices. ``recommend_many`` ranks items for many users at once
(dense scores in batches of users, seen items masked, top-k by ``argpartition``); ``recommend`` is the same for
one user and ``similar_items`` ranks the items most like one item. A list shorter than k (every item seen, or
fewer items than k) is padded with item −1 and score NaN.

Each family has good defaults (``defaults()``) and a search space (``sample(rng)``) for the selection loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.extmath import randomized_svd
from sklearn.utils.validation import check_is_fitted

WEIGHTINGS = ("binary", "log", "bm25")
SCORE_CELLS = 4_000_000  # dense scores computed at once (users × items), about 16 MB of float32
MAX_EASE_ITEMS = 10_000  # EASE inverts an items × items matrix: 10,000 items need about 1.2 GB while fitting
BM25_K1, BM25_B = 1.2, 0.75

Params = dict[str, Any]


def weigh(X: sp.csr_matrix, scheme: str) -> sp.csr_matrix:
    """The matrix reweighed: ``binary`` (1 per pair), ``log`` (ln(1 + weight)) or ``bm25`` (ln(1 + weight)
    saturated by BM25 against the user's number of items, times the item's idf ln(1 + users / (1 + its users)))."""
    if scheme not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {scheme!r}; use one of {WEIGHTINGS}")
    W = sp.csr_matrix(X, dtype=np.float32, copy=True)
    if scheme == "binary":
        W.data[:] = 1.0
    elif scheme == "log":
        W.data = np.log1p(W.data)
    else:
        tf = np.log1p(W.data)
        lengths = np.diff(W.indptr).astype(np.float32)
        norm = (1.0 - BM25_B) + BM25_B * lengths / max(float(lengths.mean()), 1e-9)
        df = np.bincount(W.indices, minlength=W.shape[1]).astype(np.float32)
        idf = np.log1p(W.shape[0] / (1.0 + df))
        W.data = tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * np.repeat(norm, np.diff(W.indptr))) * idf[W.indices]
        W.data = W.data.astype(np.float32)
    return W


def check_matrix(X: Any) -> sp.csr_matrix:
    """A users × items CSR float32 matrix with sorted indices and no negative weights."""
    if not sp.issparse(X):
        raise ValueError(f"a recommender fits a sparse users × items matrix, got {type(X).__name__}")
    X = sp.csr_matrix(X, dtype=np.float32)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"the matrix is empty ({X.shape[0]} users × {X.shape[1]} items)")
    if X.nnz and X.data.min() < 0:
        raise ValueError("interaction weights must not be negative")
    X.sum_duplicates()
    X.sort_indices()
    return X


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and values of the k highest scores, best first; −inf scores become (−1, NaN)."""
    n_rows, n = scores.shape
    take = min(k, n)
    items = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), np.nan, dtype=np.float32)
    if take == 0 or n_rows == 0:
        return items, values
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n else np.tile(np.arange(n), (n_rows, 1))
    part_values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_values, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best_values = np.take_along_axis(part_values, order, axis=1)
    valid = np.isfinite(best_values)
    items[:, :take] = np.where(valid, best, -1)
    values[:, :take] = np.where(valid, best_values, np.nan)
    return items, values


def row_cells(X: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``rows``, column) of every stored cell of those rows, without slicing the matrix."""
    starts, ends = X.indptr[rows], X.indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(total)
    return np.repeat(np.arange(len(rows)), lengths), X.indices[offsets]


def _pick(rng: np.random.Generator, options: list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


class Candidate(BaseEstimator):
    """The shared fit / recommend machinery; a family implements ``_fit``, ``_score`` and ``_item_scores``."""

    family: ClassVar[str] = ""

    def fit(self, X: sp.csr_matrix, y: Any = None) -> Candidate:
        """Learn from the users × items matrix ``X`` of summed interaction weights."""
        X = check_matrix(X)
        self.seen_ = X
        self.n_users_, self.n_items_ = X.shape
        # Exact ties (e.g. the zero scores of items no neighbour points at) go to the more popular item.
        users_per_item = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        self.tiebreak_ = (1e-6 * users_per_item / max(1.0, float(users_per_item.max()))).astype(np.float32)
        self._fit(X)
        return self

    def _fit(self, X: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(users) × items), a fresh array the caller may change."""
        raise NotImplementedError

    def _item_scores(self, item: int) -> np.ndarray:
        """How alike every item is to ``item`` (float, higher is more alike)."""
        raise NotImplementedError

    def recommend_many(
        self, users: np.ndarray, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores (len(users) × k) for user indices ``users``, best first."""
        check_is_fitted(self, "seen_")
        users = self._check_users(users)
        items = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), np.nan, dtype=np.float32)
        batch = max(1, SCORE_CELLS // max(1, self.n_items_))
        for start in range(0, len(users), batch):
            block = users[start : start + batch]
            dense = self._score(block)
            dense += self.tiebreak_
            if exclude_seen:
                rows, cols = row_cells(self.seen_, block)
                dense[rows, cols] = -np.inf
            items[start : start + batch], scores[start : start + batch] = top_k(dense, k)
        return items, scores

    def recommend(self, user: int, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for one user index."""
        items, scores = self.recommend_many(np.array([user]), k, exclude_seen)
        return items[0], scores[0]

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most like item index ``item`` (never itself), best first."""
        check_is_fitted(self, "seen_")
        if not 0 <= int(item) < self.n_items_:
            raise IndexError(f"item index {item} is outside 0…{self.n_items_ - 1}")
        scores = np.asarray(self._item_scores(int(item)), dtype=np.float32) + self.tiebreak_
        scores[int(item)] = -np.inf
        items, values = top_k(scores[None, :], k)
        return items[0], values[0]

    def _check_users(self, users: Any) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64).ravel()
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise IndexError(f"user indices must lie in 0…{self.n_users_ - 1}")
        return users

    @classmethod
    def defaults(cls) -> Params:
        return {}

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Params:
        return cls.defaults()


class MostPopular(Candidate):
    """Every user gets the items most users interacted with (the baseline); similar items are popular ones too."""

    family = "most_popular"

    def _fit(self, X: sp.csr_matrix) -> None:
        users_per_item = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        self.popularity_ = users_per_item / max(1, X.shape[0])  # the share of users who interacted

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(users), 1))

    def _item_scores(self, item: int) -> np.ndarray:
        return self.popularity_


class ItemKNN(Candidate):
    """Item-to-item cosine nearest neighbours on co-occurrence: sim(i, j) = c_ij / (‖i‖‖j‖ + shrink), each
    item's ``neighbors`` most similar items kept (sparse); a user's score for j sums sim(i, j) over their items i."""

    family = "item_knn"

    def __init__(self, neighbors: int = 100, shrink: float = 10.0, weighting: str = "binary") -> None:
        self.neighbors = neighbors
        self.shrink = shrink
        self.weighting = weighting

    def _fit(self, X: sp.csr_matrix) -> None:
        W = weigh(X, self.weighting)
        self.weighted_ = W
        n = W.shape[1]
        keep = max(1, min(int(self.neighbors), n - 1))
        items_by_user = W.T.tocsr()
        by_item = W.tocsc()
        norms = np.sqrt(np.asarray(W.multiply(W).sum(axis=0)).ravel()).astype(np.float32)
        rows, cols, vals = [], [], []
        block = max(1, SCORE_CELLS // max(1, n))
        for start in range(0, n, block):
            stop = min(n, start + block)
            co = (items_by_user @ by_item[:, start:stop]).toarray().T  # (block, items): c_ji
            sims = co / (norms[start:stop, None] * norms[None, :] + np.float32(self.shrink) + 1e-12)
            sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
            best = (
                np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
                if keep < n
                else np.tile(np.arange(n), (stop - start, 1))
            )
            best_vals = np.take_along_axis(sims, best, axis=1)
            nonzero = best_vals > 0
            rows.append(np.repeat(np.arange(start, stop), nonzero.sum(axis=1)))
            cols.append(best[nonzero])
            vals.append(best_vals[nonzero])
        # neighbours_[j] holds j's nearest items; similarity_[i, j] = sim(i, j) where i is one of them.
        neighbours = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        neighbours.sort_indices()
        self.neighbours_ = neighbours
        self.similarity_ = neighbours.T.tocsr()

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.weighted_[users] @ self.similarity_).toarray(), dtype=np.float32)

    def _item_scores(self, item: int) -> np.ndarray:
        return self.neighbours_[item].toarray().ravel()

    @classmethod
    def defaults(cls) -> Params:
        return {"neighbors": 100, "shrink": 10.0, "weighting": "binary"}

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Params:
        return {
            "neighbors": _pick(rng, [20, 50, 100, 200, 400]),
            "shrink": _pick(rng, [0.0, 2.0, 10.0, 50.0, 100.0]),
            "weighting": _pick(rng, list(WEIGHTINGS)),
        }


class PureSVD(Candidate):
    """Matrix factorisation: a truncated SVD of the reweighed matrix (randomised); a user's scores are their
    row projected on the item factors and back (x V Vᵀ), so users unseen at fit time fold in for free."""

    family = "svd"

    def __init__(self, factors: int = 64, weighting: str = "bm25", n_iter: int = 5, random_state: int = 0) -> None:
        self.factors = factors
        self.weighting = weighting
        self.n_iter = n_iter
        self.random_state = random_state

    def _fit(self, X: sp.csr_matrix) -> None:
        W = weigh(X, self.weighting)
        # A rank near the matrix's own only reproduces it: at most a quarter of its smaller side.
        rank = max(1, min(int(self.factors), min(W.shape) // 4))
        _, sigma, vt = randomized_svd(W, rank, n_iter=self.n_iter, random_state=self.random_state)
        self.weighted_ = W
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)  # items × factors
        embedding = vt.T * sigma
        norms = np.linalg.norm(embedding, axis=1, keepdims=True)
        self.item_embedding_ = (embedding / np.maximum(norms, 1e-12)).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.weighted_[users] @ self.item_factors_) @ self.item_factors_.T, dtype=np.float32)

    def _item_scores(self, item: int) -> np.ndarray:
        return self.item_embedding_ @ self.item_embedding_[item]

    @classmethod
    def defaults(cls) -> Params:
        return {"factors": 64, "weighting": "bm25"}

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Params:
        return {"factors": _pick(rng, [16, 32, 48, 64, 96, 128, 192, 256]), "weighting": _pick(rng, list(WEIGHTINGS))}


class EASE(Candidate):
    """EASE (Steck 2019): a closed-form linear item-to-item model, B = I − P·diag(1/diag(P)) with
    P = (XᵀX + λI)⁻¹ (Cholesky in float32) and a zero diagonal; scores are x B. Each item's ``neighbors``
    largest |weights| are kept (sparse: a tenth of the memory, faster answers, NDCG within 0.5 % of the dense
    B on the example); ``neighbors=None`` keeps B dense. Items are capped at ``MAX_EASE_ITEMS``."""

    family = "ease"

    def __init__(self, l2: float = 200.0, weighting: str = "binary", neighbors: int | None = 256) -> None:
        self.l2 = l2
        self.weighting = weighting
        self.neighbors = neighbors

    def _fit(self, X: sp.csr_matrix) -> None:
        n = X.shape[1]
        if n > MAX_EASE_ITEMS:
            raise ValueError(
                f"EASE inverts an items × items matrix; {n:,} items exceed its limit of {MAX_EASE_ITEMS:,}"
            )
        W = weigh(X, self.weighting)
        gram = (W.T @ W).toarray().astype(np.float32)
        gram[np.diag_indices(n)] += np.float32(self.l2)
        factor, info = scipy.linalg.lapack.spotrf(gram, lower=False, overwrite_a=True)
        if info != 0:
            raise ValueError(f"EASE's Gram matrix is not positive definite (LAPACK info {info}); raise l2")
        del gram
        upper, info = scipy.linalg.lapack.spotri(factor, lower=False, overwrite_c=True)
        del factor
        precision = np.triu(upper)
        del upper
        precision += np.triu(precision, 1).T
        weights = precision
        weights /= -np.diag(precision).copy()[None, :]
        weights[np.diag_indices(n)] = 0.0
        self.weighted_ = W
        self.weights_ = weights if self.neighbors is None else _prune_rows(weights, int(self.neighbors))

    def _score(self, users: np.ndarray) -> np.ndarray:
        if len(users) == 1:  # real time: only the user's own rows of B
            start, stop = self.weighted_.indptr[users[0]], self.weighted_.indptr[users[0] + 1]
            values, cols = self.weighted_.data[start:stop], self.weighted_.indices[start:stop]
            if sp.issparse(self.weights_):
                row = sp.csr_matrix((values, cols, np.array([0, stop - start])), shape=(1, self.n_items_))
                return (row @ self.weights_).toarray().astype(np.float32)
            return (values @ self.weights_[cols])[None, :].astype(np.float32)
        scores = self.weighted_[users] @ self.weights_
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def _item_scores(self, item: int) -> np.ndarray:
        row = self.weights_[item]
        return row.toarray().ravel() if sp.issparse(row) else row

    @classmethod
    def defaults(cls) -> Params:
        return {"l2": 200.0, "weighting": "binary"}

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Params:
        return {"l2": round(_loguniform(rng, 10.0, 3000.0), 1), "weighting": _pick(rng, ["binary", "log"])}


def _prune_rows(dense: np.ndarray, keep: int) -> sp.csr_matrix:
    """Each row's ``keep`` largest absolute values as a CSR matrix (rows in blocks, to bound the memory)."""
    n_rows, n = dense.shape
    keep = max(1, min(keep, n))
    if keep >= n:
        return sp.csr_matrix(dense)
    cols, vals = [], []
    for start in range(0, n_rows, 512):
        block = dense[start : start + 512]
        best = np.argpartition(-np.abs(block), keep - 1, axis=1)[:, :keep]
        best.sort(axis=1)
        cols.append(best)
        vals.append(np.take_along_axis(block, best, axis=1))
    indptr = np.arange(0, n_rows * keep + 1, keep)
    pruned = sp.csr_matrix((np.concatenate(vals).ravel(), np.concatenate(cols).ravel(), indptr), shape=(n_rows, n))
    pruned.eliminate_zeros()
    return pruned


FAMILIES: dict[str, type[Candidate]] = {c.family: c for c in (MostPopular, ItemKNN, PureSVD, EASE)}


def build(family: str, params: Params, seed: int = 0) -> Candidate:
    """An unfitted candidate of ``family`` with ``params`` (and the seed, where it draws random numbers)."""
    cls = FAMILIES[family]
    extra = {"random_state": seed} if "random_state" in cls().get_params() else {}
    return cls(**params, **extra)
