"""The bitvector tree evaluator: every row reaches the leaf scikit-learn's predictor reaches, on every kind of
HistGradientBoosting the loop fits, with missing values, ties at thresholds and deep or wide trees."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlsvc.prediction import bitvectors
from mlsvc.prediction.bitvectors import _leaf_order, compile_bitvectors
from mlsvc.prediction.compiled import NATIVE_ROWS, _compile_boosting

RNG = np.random.default_rng(11)


def _data(n: int, missing: float) -> np.ndarray:
    X = RNG.normal(size=(n, 8))
    X[:, 3] = RNG.integers(0, 2, n)  # a one-hot-like column: two intervals and missing
    X[:, 4] = RNG.integers(0, 5, n)  # few distinct values: ties at every threshold
    X[RNG.random(X.shape) < missing] = np.nan
    return X


TRAIN = _data(2000, 0.1)
HELD = np.vstack([_data(3000, 0.2), np.full((2, 8), np.nan), np.full((1, 8), np.inf), np.full((1, 8), -np.inf)])
SIGNAL = np.nan_to_num(TRAIN[:, 0]) + np.nan_to_num(TRAIN[:, 1]) * np.nan_to_num(TRAIN[:, 4]) + np.isnan(TRAIN[:, 2])


def _raw(estimator: object) -> np.ndarray:
    compiled = _compile_boosting(estimator)
    assert compiled.bitvectors is not None
    return compiled.bitvectors.raw(HELD, compiled.baseline)


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=0).fit(TRAIN, SIGNAL > 0.5),
        HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=0).fit(
            TRAIN, np.digitize(SIGNAL, [-0.5, 0.5, 1.5])
        ),
        HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=64, early_stopping=False, random_state=0).fit(
            TRAIN, SIGNAL
        ),
        HistGradientBoostingRegressor(max_iter=20, max_depth=2, random_state=0).fit(TRAIN, SIGNAL),
    ],
    ids=["binary", "multiclass", "regression-64-leaves", "shallow"],
)
def test_every_row_reaches_sklearns_leaf(estimator: object) -> None:
    expected = estimator._raw_predict(HELD)  # type: ignore[attr-defined]
    np.testing.assert_allclose(_raw(estimator), expected, rtol=0, atol=1e-12)


def test_blocks_and_a_batch_score_as_the_estimator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows in blocks that do not divide the batch; the compiled model takes this path from NATIVE_ROWS rows."""
    monkeypatch.setattr(bitvectors, "BLOCK_BYTES", 1)
    monkeypatch.setattr(bitvectors, "MIN_BLOCK_ROWS", 97)
    classifier = HistGradientBoostingClassifier(max_iter=50, early_stopping=False, random_state=1)
    classifier.fit(TRAIN, SIGNAL > 0.5)
    compiled = _compile_boosting(classifier)
    assert len(HELD) >= NATIVE_ROWS
    np.testing.assert_allclose(compiled.scores(HELD, []), classifier.predict_proba(HELD), rtol=0, atol=1e-12)


def test_one_hot_columns_are_keyed_as_a_group() -> None:
    """Columns split at one threshold each (one-hot, flags) share a table, keyed in a few calls for the group."""
    X = RNG.integers(0, 2, size=(3000, 7)).astype(np.float64)
    X[:, 6] = RNG.normal(size=3000)
    X[RNG.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + np.isnan(X[:, 3])) > 0.5
    classifier = HistGradientBoostingClassifier(max_iter=40, early_stopping=False, random_state=2).fit(X, y)
    compiled = _compile_boosting(classifier)
    assert compiled.bitvectors is not None
    grouped = [g for g in compiled.bitvectors.groups if g.cuts is not None]
    assert grouped and max(len(g.features) for g in grouped) >= 3
    held = np.vstack([X, np.full((1, 7), np.nan)])
    raw = compiled.bitvectors.raw(held, compiled.baseline)
    np.testing.assert_allclose(raw, classifier._raw_predict(held), rtol=0, atol=1e-12)


def test_trees_wider_than_64_leaves_are_left_to_the_estimator() -> None:
    wide = HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=100, min_samples_leaf=2, random_state=0)
    wide.fit(TRAIN, SIGNAL)
    compiled = _compile_boosting(wide)
    assert compiled.bitvectors is None
    np.testing.assert_allclose(compiled.scores(HELD, []), wide.predict(HELD), rtol=0, atol=1e-12)


def _tree(feature: list[int], threshold: list[float], left: list[int], right: list[int]) -> dict[str, np.ndarray]:
    leaf = np.asarray([lc == -1 for lc in left])
    return {
        "feature": np.asarray(feature),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "left": np.asarray(left),
        "right": np.asarray(right),
        "missing_left": np.asarray([True, False, True, True, True]),
        "leaf": leaf,
        "value": np.arange(len(feature), dtype=np.float64) * 10,
    }


def test_leaves_are_numbered_left_to_right() -> None:
    #        0: x0 <= 1
    #      /          \
    #   1: x1 <= 0    4 (leaf)
    #   /      \
    #  2        3      (leaves)
    tree = _tree([0, 1, 0, 0, 0], [1.0, 0.0, 0, 0, 0], [1, 2, -1, -1, -1], [4, 3, -1, -1, -1])
    leaves, left_ranges = _leaf_order(tree)
    assert leaves.tolist() == [2, 3, 4]
    assert left_ranges == {0: (0, 2), 1: (0, 1)}
    compiled = compile_bitvectors([tree])
    assert compiled is not None
    rows = np.asarray(
        [[1.0, 0.0], [1.0, 0.5], [1.5, -9.0], [np.nan, 0.0], [0.0, np.nan]]  # ties go left; NaN as missing_left says
    )
    raw = compiled.raw(rows, np.zeros((1, 1)))
    assert raw[:, 0].tolist() == [20.0, 30.0, 40.0, 20.0, 30.0]


def test_a_tree_of_one_leaf() -> None:
    stump = {
        "feature": np.zeros(1, dtype=np.intp),
        "threshold": np.zeros(1),
        "left": np.zeros(1, dtype=np.intp),
        "right": np.zeros(1, dtype=np.intp),
        "missing_left": np.zeros(1, dtype=bool),
        "leaf": np.ones(1, dtype=bool),
        "value": np.asarray([2.5]),
    }
    assert compile_bitvectors([stump]) is None  # nothing to compare: no table to build
