"""Amazon ML's data rearrangement: which rows of the files a datasource takes, reproducibly."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from mlsvc.resources import Splitting

_TWO_64 = float(2**64)


def needs_row_count(splitting: Splitting | None) -> bool:
    """A sequential split is by position, so it needs the total row count first (a counting pass)."""
    return splitting is not None and splitting.strategy == "sequential" and _is_partial(splitting)


def _is_partial(splitting: Splitting) -> bool:
    return not (splitting.percentBegin == 0 and splitting.percentEnd == 100)


def select_rows(raw: pd.DataFrame, first_index: int, total_rows: int | None, splitting: Splitting | None) -> np.ndarray:
    """A boolean mask of the rows of ``raw`` (rows ``first_index``… of the datasource) that the split keeps."""
    n = len(raw)
    if splitting is None or not _is_partial(splitting):
        keep = np.ones(n, dtype=bool)
        return ~keep if splitting is not None and splitting.complement else keep
    if splitting.strategy == "random":
        position = _row_fractions(raw, splitting.randomSeed) * 100.0
    else:
        if not total_rows:
            return np.zeros(n, dtype=bool)
        position = (np.arange(first_index, first_index + n, dtype=np.float64) / total_rows) * 100.0
    inside = (position >= splitting.percentBegin) & (position < splitting.percentEnd)
    return ~inside if splitting.complement else inside


def _row_fractions(raw: pd.DataFrame, seed: str) -> np.ndarray:
    """Each row's place in [0, 1) from a hash of its content and the seed: the same row lands on the same
    side whichever file or chunk it is in, so no second pass and no shared state are needed."""
    key = hashlib.sha256(seed.encode()).hexdigest()[:16]
    hashes = pd.util.hash_pandas_object(raw, index=False, hash_key=key).to_numpy(dtype=np.uint64)
    return hashes.astype(np.float64) / _TWO_64
