"""The label a BINARY model gives a score: its positive class at or above the score threshold, else its negative."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_THRESHOLD = 0.5


def threshold_or_default(threshold: float | None) -> float:
    """A model's score threshold, or the default for one that has none set (0.5)."""
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def binary_label(score: float, classes: Sequence[str], threshold: float | None) -> str:
    """A score's label: ``classes`` are (negative, positive), as a BINARY model records them. A score at a time,
    as a real-time answer is built: through a numpy array of strings, one record's label cost three times more."""
    negative, positive = classes
    return positive if score >= threshold_or_default(threshold) else negative
