"""Amazon ML's data rearrangement: which rows of the files a datasource takes, reproducibly."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsvc.resources import Splitting

_TWO_64 = float(2**64)


def needs_row_count(splitting: Splitting | None) -> bool:
    """A sequential split is by position, so it needs the total row count first (a counting pass)."""
    return splitting is not None and splitting.strategy == "sequential" and _is_partial(splitting)


def _is_partial(splitting: Splitting) -> bool:
    return not (splitting.percentBegin == 0 and splitting.percentEnd == 100)


def select_rows(
    raw: pd.DataFrame | pa.RecordBatch, ordinals: np.ndarray, total_rows: int | None, splitting: Splitting | None
) -> np.ndarray:
    """A boolean mask of the rows of ``raw`` (string tokens, as a frame or an arrow batch) that the split keeps.

    ``ordinals`` are the rows' 0-based positions among all the datasource's rows (a sequential split places
    row k of n at 100·k/n percent); ``total_rows`` is n, needed by a sequential split only. A random split
    places each row by a hash of its raw tokens and the seed, so it needs neither. Either way a row's side
    depends on nothing but the row (and its position), never on how the files were cut into chunks, so
    ``percentBegin..percentEnd`` and its complement (or the adjacent ranges) are disjoint and cover every row.
    """
    n = raw.num_rows if isinstance(raw, pa.RecordBatch) else len(raw)
    if splitting is None or not _is_partial(splitting):
        keep = np.ones(n, dtype=bool)
        return ~keep if splitting is not None and splitting.complement else keep
    if splitting.strategy == "random":
        # Compared as fractions of 2**64 in exact integers: no float rounding can put a row on both sides.
        hashes = _row_hashes(raw, splitting.randomSeed)
        inside = (_at_or_above(hashes, splitting.percentBegin)) & ~_at_or_above(hashes, splitting.percentEnd)
    else:
        if not total_rows:
            return np.zeros(n, dtype=bool)
        scaled = np.asarray(ordinals, dtype=np.int64) * 100
        inside = (scaled >= splitting.percentBegin * total_rows) & (scaled < splitting.percentEnd * total_rows)
    return ~inside if splitting.complement else inside


def _at_or_above(hashes: np.ndarray, percent: int) -> np.ndarray:
    """hash / 2**64 >= percent / 100, exactly."""
    if percent <= 0:
        return np.ones(len(hashes), dtype=bool)
    if percent >= 100:
        return np.zeros(len(hashes), dtype=bool)
    threshold = np.uint64(-(-(percent << 64) // 100))  # ceil(percent · 2**64 / 100)
    return hashes >= threshold


def _row_hashes(raw: pd.DataFrame | pa.RecordBatch, seed: str) -> np.ndarray:
    """Each row's 64-bit hash of its content and the seed: the same row lands on the same side whichever
    file or chunk it is in, so no second pass and no shared state are needed.

    It is pandas' ``hash_pandas_object(frame, index=False, hash_key=...)`` of the row's tokens, the hash splits
    have always used, so datasources made before and after keep splitting a file the same way. An arrow batch
    is hashed one distinct token at a time (``hash_pandas_object`` factorises object columns the same way)."""
    key = hashlib.sha256(seed.encode()).hexdigest()[:16]
    if isinstance(raw, pd.DataFrame):
        return pd.util.hash_pandas_object(raw, index=False, hash_key=key).to_numpy(dtype=np.uint64)
    return _combine_hashes([_column_hashes(column, key) for column in raw.columns], raw.num_rows)


def _column_hashes(column: pa.Array, key: str) -> np.ndarray:
    encoded = pc.dictionary_encode(column)
    tokens = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    hashes = np.append(pd.util.hash_array(tokens, hash_key=key, categorize=False), np.uint64(2**64 - 1))
    indices = encoded.indices
    if indices.null_count:  # a missing token hashes as pandas hashes a null
        indices = pc.fill_null(indices, len(tokens))
    return hashes[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)]


def _combine_hashes(columns: list[np.ndarray], rows: int) -> np.ndarray:
    """pandas' combination of column hashes into row hashes (CPython's tuple hash, as in ``hash_pandas_object``)."""
    out = np.full(rows, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    for i, hashes in enumerate(columns):
        inverse = len(columns) - i
        out ^= hashes
        out *= mult
        mult += np.uint64(82520 + inverse + inverse)
    out += np.uint64(97531)
    return out
