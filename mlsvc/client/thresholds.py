"""Choosing a BINARY model's score threshold from its evaluation's threshold table, on the caller's side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def choose_threshold(
    table: Sequence[Mapping[str, Any]], *, min_precision: float | None = None, min_recall: float | None = None
) -> float | None:
    """The threshold from a binary evaluation's ``thresholds`` table that meets every target given.

    With ``min_precision`` (alone or with ``min_recall``): the lowest threshold that meets the
    targets, which catches the most positives at that precision (the fraud example: flag as many
    frauds as possible while at least 90 % of flags are right). With ``min_recall`` alone: the
    highest threshold that still meets it, which makes the fewest false alarms. ``None`` when no
    threshold meets the targets; a row whose figure is undefined (None) does not meet it.
    """
    if min_precision is None and min_recall is None:
        raise ValueError("give min_precision, min_recall or both")

    def meets(row: Mapping[str, Any]) -> bool:
        for key, target in (("precision", min_precision), ("recall", min_recall)):
            if target is not None and (row.get(key) is None or row[key] < target):
                return False
        return True

    passing = sorted(float(row["threshold"]) for row in table if meets(row))
    if not passing:
        return None
    return passing[0] if min_precision is not None else passing[-1]
