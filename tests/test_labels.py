"""The BINARY label rule, shared by real-time and batch scoring: positive at or above the threshold (0.5 unless set)."""

from __future__ import annotations

import math

from mlsvc.prediction.labels import DEFAULT_THRESHOLD, binary_label, threshold_or_default


def test_a_score_at_or_above_the_threshold_is_the_positive_class() -> None:
    scores = [0.1, 0.3, 0.3000001, 0.9]
    assert [binary_label(s, ["no", "yes"], 0.3) for s in scores] == ["no", "yes", "yes", "yes"]


def test_without_a_threshold_the_default_applies() -> None:
    assert threshold_or_default(None) == DEFAULT_THRESHOLD == 0.5 and threshold_or_default(0.7) == 0.7
    assert [binary_label(s, ["0", "1"], None) for s in (0.49, 0.5)] == ["0", "1"]


def test_a_missing_score_is_the_negative_class() -> None:
    assert binary_label(math.nan, ["stay", "churn"], 0.5) == "stay"
