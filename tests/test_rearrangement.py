"""Data rearrangement: random and sequential splits are reproducible, disjoint from their complement, and do not
depend on how the rows arrive in chunks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlsvc.datasources.rearrangement import needs_row_count, select_rows
from mlsvc.resources import Splitting


def _rows(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "x": rng.normal(size=n).round(3).astype(str),
            "plan": rng.choice(["a", "b", "c"], size=n),
        },
        dtype=object,
    )


def _select(frame: pd.DataFrame, splitting: Splitting | None, cuts: list[int]) -> np.ndarray:
    """Select chunk by chunk, the chunks cut at ``cuts``; give back the kept row numbers."""
    kept = []
    bounds = [0, *cuts, len(frame)]
    for lo, hi in itertools.pairwise(bounds):
        mask = select_rows(frame.iloc[lo:hi], np.arange(lo, hi), len(frame), splitting)
        kept.extend(np.flatnonzero(mask) + lo)
    return np.asarray(kept, dtype=np.int64)


def _split(**kw: object) -> Splitting:
    return Splitting.model_validate(kw)


@pytest.mark.parametrize("strategy", ["random", "sequential"])
def test_a_split_does_not_depend_on_chunking(strategy: str) -> None:
    frame = _rows(5000)
    splitting = _split(percentBegin=10, percentEnd=65, strategy=strategy, randomSeed="s1")
    whole = _select(frame, splitting, [])
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = sorted(rng.choice(np.arange(1, 5000), size=25, replace=False).tolist())
        assert np.array_equal(_select(frame, splitting, cuts), whole)


@pytest.mark.parametrize("strategy", ["random", "sequential"])
def test_a_range_and_its_complement_are_disjoint_and_cover_every_row(strategy: str) -> None:
    frame = _rows(3001)
    train = _select(frame, _split(percentEnd=70, strategy=strategy, randomSeed="k"), [1000, 2000])
    test = _select(frame, _split(percentEnd=70, strategy=strategy, randomSeed="k", complement=True), [500])
    rest = _select(frame, _split(percentBegin=70, strategy=strategy, randomSeed="k"), [1500])
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(3001))
    assert np.array_equal(test, rest)  # 70..100 is the complement of 0..70
    assert abs(len(train) / 3001 - 0.7) < 0.03


def test_adjacent_ranges_partition_the_rows() -> None:
    frame = _rows(2000)
    parts = [
        _select(frame, _split(percentBegin=lo, percentEnd=hi, strategy="random", randomSeed="p"), [777])
        for lo, hi in [(0, 20), (20, 55), (55, 100)]
    ]
    assert sum(len(p) for p in parts) == 2000
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(2000))


def test_the_seed_decides_a_random_split_and_the_same_seed_gives_the_same_rows() -> None:
    frame = _rows(2000)
    a = _select(frame, _split(percentEnd=50, strategy="random", randomSeed="one"), [])
    again = _select(frame, _split(percentEnd=50, strategy="random", randomSeed="one"), [999])
    other = _select(frame, _split(percentEnd=50, strategy="random", randomSeed="two"), [])
    assert np.array_equal(a, again)
    assert not np.array_equal(a, other)
    # A random split is not a block of consecutive rows.
    assert a.min() < 100 and a.max() > 1900


def test_a_random_split_places_a_row_by_its_content_not_its_position() -> None:
    frame = _rows(1000)
    splitting = _split(percentEnd=30, strategy="random", randomSeed="z")
    mask = select_rows(frame, np.arange(1000), None, splitting)
    shuffled = frame.sample(frac=1.0, random_state=3)
    mask_shuffled = select_rows(shuffled, np.arange(1000), None, splitting)
    assert set(frame["id"][mask]) == set(shuffled["id"][mask_shuffled])


def test_a_sequential_split_takes_exact_positions() -> None:
    frame = _rows(10)
    assert _select(frame, _split(percentEnd=70), [3]).tolist() == list(range(7))
    assert _select(frame, _split(percentBegin=70), [3]).tolist() == [7, 8, 9]
    assert _select(frame, _split(percentBegin=25, percentEnd=75), [5]).tolist() == [3, 4, 5, 6, 7]
    # Ordinals, not positions within a chunk, decide: rows 7.. of the datasource in a chunk of their own.
    assert select_rows(frame.iloc[:3], np.array([7, 8, 9]), 10, _split(percentEnd=70)).tolist() == [False] * 3


def test_whole_range_empty_range_and_no_split() -> None:
    frame = _rows(50)
    assert _select(frame, None, []).tolist() == list(range(50))
    assert _select(frame, _split(), []).tolist() == list(range(50))
    assert _select(frame, _split(complement=True), []).tolist() == []
    assert _select(frame, _split(percentBegin=40, percentEnd=40, strategy="random"), []).tolist() == []
    assert _select(frame, _split(percentBegin=40, percentEnd=40, complement=True), [7]).tolist() == list(range(50))


def test_only_a_partial_sequential_split_needs_a_counting_pass() -> None:
    assert needs_row_count(_split(percentEnd=70)) is True
    assert needs_row_count(_split(percentEnd=70, strategy="random")) is False
    assert needs_row_count(_split()) is False
    assert needs_row_count(None) is False


@pytest.mark.parametrize("seed", ["s", "another seed"])
def test_arrow_chunks_split_exactly_as_frames_of_the_same_tokens_did(seed: str) -> None:
    """The scan hands arrow batches to the split: each row must land where the frame of its tokens put it, so a
    datasource carved before and one carved after stay disjoint."""
    frame = _rows(5000)
    frame.loc[::7, "plan"] = ""
    frame.loc[::11, "x"] = "caf\u00e9 \u65e5\u672c"
    batch = pa.RecordBatch.from_pandas(frame.astype(object), preserve_index=False)
    for begin, end in ((0, 70), (30, 45), (70, 100)):
        splitting = _split(strategy="random", randomSeed=seed, percentBegin=begin, percentEnd=end)
        ordinals = np.arange(len(frame))
        np.testing.assert_array_equal(
            select_rows(batch, ordinals, None, splitting), select_rows(frame, ordinals, None, splitting)
        )
