"""The levels a model saw of each CATEGORICAL attribute, kept so a prediction can say a value is new to it."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mlsvc.resources import Attribute, AttributeType

# Beyond this many distinct values a column is an identifier more than a category: a new value says little, and
# the list would weigh on every model document.
MAX_LEVELS = 2000


def known_levels(X: pd.DataFrame, features: Sequence[Attribute]) -> dict[str, list[str]]:
    """Each CATEGORICAL feature's distinct training values, sorted; a column with more than MAX_LEVELS is left out."""
    levels: dict[str, list[str]] = {}
    for attribute in features:
        if attribute.attributeType != AttributeType.CATEGORICAL or attribute.attributeName not in X.columns:
            continue
        values = X[attribute.attributeName].dropna().unique()
        if len(values) <= MAX_LEVELS:
            levels[attribute.attributeName] = sorted(str(v) for v in values)
    return levels
