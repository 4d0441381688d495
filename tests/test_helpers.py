"""Bitvector helper processes: the same scores as in process, through shared memory, and a dead helper's thread
scoring in process again."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from mlsvc.prediction import bitvectors
from mlsvc.prediction.compiled import _compile_boosting
from mlsvc.prediction.helpers import HELPER_ROWS, HelperPool

RNG = np.random.default_rng(5)
X = RNG.normal(size=(4000, 6))
X[:, 2] = RNG.integers(0, 2, len(X))
X[RNG.random(X.shape) < 0.05] = np.nan
Y = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 2]) > 0.5
COMPILED = _compile_boosting(HistGradientBoostingClassifier(max_iter=30, early_stopping=False).fit(X, Y))
BITVECTORS = COMPILED.bitvectors
assert BITVECTORS is not None
# More rows than a helper takes at once, in Fortran order as the compiled model hands them over.
HELD = np.asfortranarray(np.vstack([X, X, X])[: HELPER_ROWS + 1234])


def _in_thread(pool: HelperPool, rows: np.ndarray) -> np.ndarray:
    """``raw`` in a thread of its own given ``pool``, as a batch job's scoring thread is."""
    answer: list[np.ndarray] = []

    def run() -> None:
        bitvectors.evaluate_in(pool)
        answer.append(BITVECTORS.raw(rows, COMPILED.baseline))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return answer[0]


def test_a_helper_scores_as_the_process_does() -> None:
    pool = HelperPool()
    try:
        expected = BITVECTORS.raw_here(HELD, COMPILED.baseline)
        np.testing.assert_array_equal(_in_thread(pool, HELD), expected)
        np.testing.assert_array_equal(_in_thread(pool, HELD[:2000]), expected[:2000])
    finally:
        pool.close()


def test_a_dead_helper_leaves_its_thread_scoring_in_process(caplog: pytest.LogCaptureFixture) -> None:
    pool = HelperPool()
    answers: list[np.ndarray] = []

    def run() -> None:  # one thread throughout, so that both calls go to its one helper
        bitvectors.evaluate_in(pool)
        BITVECTORS.raw(HELD[:2000], COMPILED.baseline)
        (helper,) = [h for h in pool._helpers.values() if h is not None]
        helper._process.kill()
        helper._process.wait()
        answers.append(BITVECTORS.raw(HELD[:3000], COMPILED.baseline))
        answers.append(BITVECTORS.raw(HELD[:3000], COMPILED.baseline))

    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        pool.close()
    expected = BITVECTORS.raw_here(HELD[:3000], COMPILED.baseline)
    np.testing.assert_array_equal(answers[0], expected)
    np.testing.assert_array_equal(answers[1], expected)
    assert "helper process stopped" in caplog.text
