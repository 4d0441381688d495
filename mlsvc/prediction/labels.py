"""The label a BINARY model gives a score: its positive class at or above the score threshold, else its negative."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5


def threshold_or_default(threshold: float | None) -> float:
    """A model's score threshold, or the default for one that has none set (0.5)."""
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def binary_labels(scores: np.ndarray, classes: Sequence[str], threshold: float | None) -> np.ndarray:
    """Each score's label: ``classes`` are (negative, positive), as a BINARY model records them."""
    negative, positive = classes
    return np.where(np.asarray(scores) >= threshold_or_default(threshold), positive, negative)
