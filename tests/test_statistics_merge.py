"""Statistics accumulated per partition and merged in the partitions' order agree with one pass over all the rows."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlsvc.datasources.statistics import StatisticsAccumulator, _hypergeometric
from mlsvc.resources import Schema
from tests.test_statistics import WORDS, _churn, _objects, _run, _schema

CHUNK = 400  # the most rows a chunk holds; a partition is read in chunks, as a worker reads its file or byte range
PARTITIONINGS = {
    "one": (3000,),
    "two": (1234, 1766),
    "five": (700, 0, 1, 1300, 999),  # uneven, with an empty and a one-row partition
}


def _chunks(partitions: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each partition's chunk sizes: CHUNK rows at a time, the last one shorter."""
    return [tuple(min(CHUNK, size - start) for start in range(0, size, CHUNK)) for size in partitions]


def _partitioned(
    typed: pd.DataFrame, invalid: pd.DataFrame, schema: Schema, partitions: tuple[int, ...], **options: Any
) -> list[StatisticsAccumulator]:
    """One accumulator per contiguous partition, each with a seed of its own, as the job builds them."""
    accumulators, start = [], 0
    for seed, (size, chunks) in enumerate(zip(partitions, _chunks(partitions), strict=True), start=1):
        part = slice(start, start + size)
        accumulators.append(_run(typed.iloc[part], invalid.iloc[part], schema, chunks=chunks, seed=seed, **options)[0])
        start += size
    assert start == len(typed), "the partitions must cover the frame"
    return accumulators


def _merged(accumulators: list[StatisticsAccumulator]) -> StatisticsAccumulator:
    """The partitions folded into the first, in their order."""
    first, *rest = accumulators
    for other in rest:
        first.merge(other)
    return first


def _assert_same(merged: Any, single: Any, path: str = "result") -> None:
    """Equal, exactly, but for floats, which rounding may part by a relative 1e-12."""
    assert type(merged) is type(single), path
    if isinstance(single, dict):
        assert list(merged) == list(single), path
        for key in single:
            _assert_same(merged[key], single[key], f"{path}.{key}")
    elif isinstance(single, list):
        assert len(merged) == len(single), path
        for i, (m, s) in enumerate(zip(merged, single, strict=True)):
            _assert_same(m, s, f"{path}[{i}]")
    elif isinstance(single, float):
        assert merged == pytest.approx(single, rel=1e-12), path
    else:
        assert merged == single, path


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    """The churn table, with +/-inf and a BINARY 2 (invalid), and a row whose every text and number is missing."""
    typed, invalid, schema = _churn(n=3000, seed=13)
    typed.loc[[5, 1500], "tenure"] = [np.inf, -np.inf]
    typed.loc[[6, 2500], "flag"] = 2.0
    typed.loc[700, ["tenure", "plan", "note"]] = [np.nan, None, None]  # the five-way split's one-row partition
    invalid.loc[700, ["tenure", "plan", "note"]] = False
    return typed, invalid, schema


@pytest.mark.parametrize("partitioning", list(PARTITIONINGS))
@pytest.mark.parametrize("target", ["churned", "tenure", "plan"])  # BINARY, NUMERIC and CATEGORICAL targets
def test_merged_partitions_give_the_single_pass_while_it_is_exact(table, target, partitioning):
    typed, invalid, churn_schema = table
    schema = churn_schema.model_copy(update={"targetAttributeName": target})
    partitions = PARTITIONINGS[partitioning]
    options = {"sample_size": 5000, "top_k": 5, "histogram_bins": 12, "distinct_cap": 50}
    single, expected = _run(
        typed, invalid, schema, chunks=[size for sizes in _chunks(partitions) for size in sizes], **options
    )
    merged = _merged(_partitioned(typed, invalid, schema, partitions, **options))
    result = merged.result()

    _assert_same(result, expected)
    pd.testing.assert_frame_equal(merged.sample(), single.sample())  # every row, in stream order
    assert result["approximate"] is False and result["sample_rows"] == len(typed)
    attributes = result["attributes"]
    assert attributes["tenure"]["invalid"] >= 2 and attributes["flag"]["invalid"] >= 2  # the inf and the 2 count
    assert attributes["plan"]["top_counts_exact"] is True and attributes["note"]["top_token_counts_exact"] is True
    if target != "plan":
        assert attributes["noise"]["association"]["correlation"] is not None  # the co-moments were merged


def test_past_the_sample_and_the_distinct_cap_the_merge_keeps_the_single_pass_guarantees():
    n, partitions, cap = 2000, (300, 0, 800, 50, 850), 8
    rng = np.random.default_rng(21)
    heavy = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.25, 0.2, 0.15])
    c = heavy.astype(object)
    c[:300][rng.random(300) < 0.02] = "x"  # the first partition stays under the cap on its own
    c[300:1100] = np.where(rng.random(800) < 0.5, [f"rare{i}" for i in range(800)], c[300:1100])  # past it
    c[1150:1153] = ["late0", "late1", "late2"]  # new values in a partition under the cap, after one past it
    words = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    words[300:1100] = [f"{w} token{i}" if i % 2 else w for i, w in enumerate(words[300:1100])]
    typed = pd.DataFrame(
        {
            "k": np.arange(n, dtype=float),  # which row a sampled row is
            "c": _objects(c, rng.random(n) < 0.05),
            "d": _objects([f"v{i // 150}" for i in range(n)], np.zeros(n, bool)),  # each part under the cap, not all
            "note": _objects(words, rng.random(n) < 0.05),
            "y": rng.integers(0, 2, n).astype(float),
        }
    )
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    schema = _schema("y", k="NUMERIC", c="CATEGORICAL", d="CATEGORICAL", note="TEXT", y="BINARY")
    options = {"sample_size": 50, "distinct_cap": cap, "top_k": cap}
    merged = _merged(_partitioned(typed, invalid, schema, partitions, **options))
    result = merged.result()
    again = _merged(_partitioned(typed, invalid, schema, partitions, **options)).result()
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)  # deterministic for fixed seeds

    assert result["row_count"] == n and result["approximate"] is True
    assert result["attributes"]["k"]["mean"] == pytest.approx(typed["k"].mean(), rel=1e-12)  # still exact
    token_truth = Counter(token for text in typed["note"].dropna() for token in text.split())
    for name, key, truth in (
        ("c", "value", typed["c"].value_counts().to_dict()),
        ("d", "value", typed["d"].value_counts().to_dict()),
        ("note", "token", token_truth),
    ):
        stats = result["attributes"][name]
        summary = {
            "distinct": stats.get("distinct", stats.get("vocabulary")),
            "lower_bound": stats.get("distinct_is_lower_bound", stats.get("vocabulary_is_lower_bound")),
            "estimate": stats.get("distinct_estimate", stats.get("vocabulary_estimate")),
            "top": stats.get("top_values", stats.get("top_tokens")),
            "exact": stats.get("top_counts_exact", stats.get("top_token_counts_exact")),
            "bound": stats.get("count_error_bound", stats.get("token_count_error_bound")),
        }
        counted = sum(truth.values())
        assert summary["exact"] is False and summary["lower_bound"] is True, name
        assert 0 < summary["bound"] <= counted / (cap + 1), name  # counted: the rows' values, or their tokens
        reported = {top[key]: top["count"] for top in summary["top"]}
        for value, count in reported.items():
            assert truth[value] - summary["bound"] <= count <= truth[value], (name, value)
        assert {value for value, count in truth.items() if count > summary["bound"]} <= set(reported), name
        assert summary["distinct"] <= len(truth), name
        assert summary["estimate"] == len(truth), name  # fewer values than the sketch holds: it is their union

    sample = merged.sample()
    assert result["sample_rows"] == merged.sample_rows == len(sample) == 50
    rows = sample["k"].astype(int)
    assert rows.is_unique
    pd.testing.assert_frame_equal(sample, typed.iloc[rows].reset_index(drop=True), check_dtype=False)


def test_past_the_sample_each_partition_contributes_in_proportion_to_its_rows():
    n, partitions, size = 2000, (300, 0, 800, 50, 850), 50
    typed = pd.DataFrame({"k": np.arange(n, dtype=float)})
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    schema = _schema(None, k="NUMERIC")
    edges = np.cumsum((0, *partitions))
    found = np.zeros(len(partitions))
    trials = 200
    for trial in range(trials):
        parts, start = [], 0
        for i, rows in enumerate(partitions):
            accumulator = StatisticsAccumulator(schema, sample_size=size, seed=trial * 10 + i)
            accumulator.update(typed.iloc[start : start + rows], invalid.iloc[start : start + rows])
            parts.append(accumulator)
            start += rows
        k = _merged(parts).sample()["k"].to_numpy()
        assert len(np.unique(k)) == size
        found += np.histogram(k, bins=edges)[0]
    assert found / (trials * size) == pytest.approx(np.array(partitions) / n, abs=0.02)


def test_a_pickled_accumulator_merges_and_reports_as_the_original():
    typed, invalid, schema = _churn(n=1500, seed=9)
    partitions = (600, 0, 900)
    for options in ({}, {"sample_size": 200, "distinct_cap": 4}):  # exact, and past the sample and the cap
        expected = _merged(_partitioned(typed, invalid, schema, partitions, **options))
        shipped = [pickle.loads(pickle.dumps(a)) for a in _partitioned(typed, invalid, schema, partitions, **options)]
        merged = pickle.loads(pickle.dumps(_merged(shipped)))
        assert json.dumps(merged.result(), sort_keys=True) == json.dumps(expected.result(), sort_keys=True)
        pd.testing.assert_frame_equal(merged.sample(), expected.sample())
        for accumulator in (merged, expected):  # and it goes on taking chunks, its empty slots restored
            accumulator.update(typed.iloc[:300], invalid.iloc[:300])
        assert json.dumps(merged.result(), sort_keys=True) == json.dumps(expected.result(), sort_keys=True)

    fresh = StatisticsAccumulator(schema)  # a default sample of 100,000 rows: its unfilled slots are not shipped
    assert len(pickle.dumps(fresh)) < 50_000
    assert pickle.loads(pickle.dumps(fresh)).result() == fresh.result()


@pytest.mark.parametrize(
    "other",
    [{"sample_size": 99}, {"top_k": 3}, {"histogram_bins": 7}, {"distinct_cap": 11}, {"schema": "other"}],
)
def test_merging_other_settings_or_another_schema_is_refused(other):
    typed, invalid, schema = _churn(n=40)
    options = {"sample_size": 100, "top_k": 5, "histogram_bins": 10, "distinct_cap": 20}
    mine = _run(typed, invalid, schema, chunks=(40,), **options)[0]
    before = json.dumps(mine.result(), sort_keys=True)
    settings = {**options, **other}
    other_schema = schema.model_copy(update={"targetAttributeName": "flag"}) if settings.pop("schema", None) else schema
    theirs = _run(typed, invalid, other_schema, chunks=(40,), **settings)[0]
    with pytest.raises(ValueError, match="cannot merge"):
        mine.merge(theirs)
    assert json.dumps(mine.result(), sort_keys=True) == before  # refused before anything was folded in
    mine.merge(_run(typed, invalid, schema, chunks=(40,), seed=3, **options)[0])  # another seed is fine
    with pytest.raises(ValueError, match="itself"):
        mine.merge(mine)


def test_past_numpys_hypergeometric_limit_the_draw_counts_sampled_positions():
    rng = np.random.default_rng(0)
    draws = np.array([_hypergeometric(rng, 2 * 10**9, 10**9, 900) for _ in range(200)])  # numpy's own refuses these
    assert ((draws >= 0) & (draws <= 900)).all()
    assert draws.mean() == pytest.approx(600, abs=5)  # 900 * 2/3, give or take 1 (the mean's standard error)
