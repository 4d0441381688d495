"""Data insights computed chunk by chunk agree with pandas on the whole frame, in bounded memory."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlsvc.datasources.statistics import QUANTILES, StatisticsAccumulator
from mlsvc.resources import Schema
from tests.rest import assert_plain_json

CHUNKS = (700, 1, 0, 1300, 999)  # unequal, with a one-row and an empty chunk
WORDS = ["late", "refund", "great", "service", "billing", "app", "slow", "thanks"]


def _schema(target: str | None = "churned", **types: str) -> Schema:
    attributes = [{"attributeName": name, "attributeType": kind} for name, kind in types.items()]
    return Schema(attributes=attributes, targetAttributeName=target)


def _objects(values: Any, missing: np.ndarray) -> pd.Series:
    """A CATEGORICAL or TEXT column as the typed contract has it: object dtype, str or None."""
    series = pd.Series(np.asarray(values, dtype=object), dtype=object)
    series[missing] = None
    return series


def _churn(n: int = 3000, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    """Typed rows and their invalid marks: `plan` decides `churned`, `noise` is independent of it."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro", "team", "edu", "gov"], n, p=[0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    tenure = rng.normal(40.0, 12.0, n)
    balance = 1e9 + rng.normal(0.0, 1.0, n)  # a large offset, to show the moments are stable
    flag = rng.integers(0, 2, n).astype(float)
    notes = [" ".join(rng.choice(WORDS, rng.integers(1, 6))) + rng.choice(["", "!", "."]) for _ in range(n)]
    typed = pd.DataFrame(
        {
            "tenure": tenure,
            "balance": balance,
            "noise": rng.normal(size=n),
            "plan": _objects(plan, rng.random(n) < 0.05),
            "flag": flag,
            "note": _objects([note.capitalize() for note in notes], rng.random(n) < 0.1),
            "churned": np.isin(plan, ["basic", "edu"]).astype(float),
        }
    )
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    for name, missing, bad in (("tenure", 0.05, 0.02), ("flag", 0.03, 0.01), ("plan", 0.0, 0.02)):
        gone = rng.random(n) < missing + bad
        invalid.loc[gone & (rng.random(n) < bad / (missing + bad)), name] = True
        typed.loc[gone, name] = np.nan if typed[name].dtype == float else None
    schema = _schema(
        tenure="NUMERIC",
        balance="NUMERIC",
        noise="NUMERIC",
        plan="CATEGORICAL",
        flag="BINARY",
        note="TEXT",
        churned="BINARY",
    )
    return typed, invalid, schema


def _run(typed: pd.DataFrame, invalid: pd.DataFrame, schema: Schema, chunks=CHUNKS, **options: Any):
    accumulator = StatisticsAccumulator(schema, **options)
    start = 0
    for size in chunks:
        accumulator.update(typed.iloc[start : start + size], invalid.iloc[start : start + size])
        start += size
    assert start == len(typed), "the chunk sizes must cover the frame"
    return accumulator, accumulator.result()


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    typed, invalid, schema = _churn()
    _, result = _run(typed, invalid, schema)
    return typed, invalid, result


def test_counts_missing_and_invalid_are_per_attribute(churn):
    typed, invalid, result = churn
    assert result["row_count"] == len(typed)
    for name, stats in result["attributes"].items():
        assert stats["count"] == len(typed)
        assert stats["invalid"] == int(invalid[name].sum())
        assert stats["missing"] == int((typed[name].isna() & ~invalid[name]).sum())
    assert result["attributes"]["tenure"]["invalid"] > 0
    assert result["attributes"]["tenure"]["missing"] > 0


@pytest.mark.parametrize("name", ["tenure", "balance", "noise"])
def test_numeric_moments_are_exact(churn, name):
    typed, _, result = churn
    stats, column = result["attributes"][name], typed[name]
    assert stats["type"] == "NUMERIC"
    assert stats["min"] == column.min()
    assert stats["max"] == column.max()
    assert stats["mean"] == pytest.approx(column.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(column.std(), rel=1e-9)


def test_quantiles_and_histogram_are_exact_when_the_rows_fit_the_sample(churn):
    typed, _, result = churn
    stats, column = result["attributes"]["tenure"], typed["tenure"]
    assert stats["approximate"] is False
    expected = column.quantile(list(QUANTILES.values()))
    for name, q in QUANTILES.items():
        assert stats["quantiles"][name] == pytest.approx(expected[q], rel=1e-12)
    counts, edges = np.histogram(column.dropna(), bins=20, range=(column.min(), column.max()))
    assert stats["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert sum(stats["histogram"]["counts"]) == column.notna().sum()


def test_categorical_top_values_and_distinct_match_value_counts(churn):
    typed, _, result = churn
    stats = result["attributes"]["plan"]
    counts = typed["plan"].value_counts()
    assert stats["distinct"] == len(counts) == 6
    assert stats["distinct_is_lower_bound"] is False
    assert stats["top_counts_exact"] is True
    assert [(t["value"], t["count"]) for t in stats["top_values"]] == list(counts.items())


def test_binary_counts_and_true_fraction(churn):
    typed, _, result = churn
    stats, column = result["attributes"]["flag"], typed["flag"]
    assert stats["zeros"] == int((column == 0).sum())
    assert stats["ones"] == int((column == 1).sum())
    assert stats["true_fraction"] == pytest.approx(column.mean(), rel=1e-12)


def test_text_lengths_tokens_and_vocabulary(churn):
    typed, _, result = churn
    stats, texts = result["attributes"]["note"], typed["note"].dropna()
    lengths = texts.str.len()
    tokens = [re.sub(r"[^\w\s]", "", text.lower()).split() for text in texts]
    per_value = np.array([len(t) for t in tokens])
    vocabulary = Counter(token for t in tokens for token in t)
    assert (stats["length_min"], stats["length_max"]) == (lengths.min(), lengths.max())
    assert stats["length_mean"] == pytest.approx(lengths.mean(), rel=1e-12)
    assert stats["tokens_mean"] == pytest.approx(per_value.mean(), rel=1e-12)
    assert stats["tokens_max"] == per_value.max()
    assert stats["vocabulary"] == len(vocabulary) == len(WORDS)
    assert {t["token"]: t["count"] for t in stats["top_tokens"]} == dict(vocabulary)


def test_words_of_only_punctuation_are_not_tokens():
    notes = [
        "late - again !",
        "Refund, refund",
        "- -",
        "app\u00a0slow \u2014 thanks",
        None,
        "\u00e9t\u00e9 \u00c9T\u00c9!",
    ]
    typed = pd.DataFrame({"note": _objects(notes, np.array([v is None for v in notes]))})
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    _, result = _run(typed, invalid, _schema(None, note="TEXT"), chunks=(4, 2))
    stats = result["attributes"]["note"]
    tokens = [re.sub(r"[^\w\s]", "", text.lower()).split() for text in notes if text is not None]
    assert stats["tokens_max"] == 3 and stats["tokens_mean"] == pytest.approx(np.mean([len(t) for t in tokens]))
    assert {t["token"]: t["count"] for t in stats["top_tokens"]} == dict(Counter(w for t in tokens for w in t))


def test_arrow_columns_give_the_statistics_the_typed_frame_gives():
    """The datasource job hands over arrow and numpy columns (``values.coerce_array``), not the object frame."""
    typed, invalid, schema = _churn(n=6000, seed=3)
    options = {"sample_size": 1500, "distinct_cap": 5, "top_k": 4}
    _, expected = _run(typed, invalid, schema, chunks=(1000,) * 6, **options)
    accumulator = StatisticsAccumulator(schema, **options)
    for start in range(0, 6000, 1000):
        part = typed.iloc[start : start + 1000]
        columns = {
            "plan": pc.dictionary_encode(pa.array(part["plan"].to_numpy(), type=pa.string(), from_pandas=True)),
            "note": pa.array(part["note"].to_numpy(), type=pa.string(), from_pandas=True),
            **{name: part[name].to_numpy(dtype=float) for name in ("tenure", "balance", "noise", "flag", "churned")},
        }
        masks = {name: invalid[name].to_numpy()[start : start + 1000] for name in ("tenure", "flag", "plan")}
        accumulator.update_columns(columns, masks, len(part))
    assert json.dumps(accumulator.result(), sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert expected["attributes"]["note"]["top_token_counts_exact"] is False  # the summaries were exercised


def test_target_distribution_and_associations(churn):
    typed, _, result = churn
    target = result["target"]
    assert target["name"] == "churned" and target["type"] == "BINARY"
    assert target["class_counts"] == {"0": int((typed["churned"] == 0).sum()), "1": int(typed["churned"].sum())}
    plan = result["attributes"]["plan"]["association"]
    noise = result["attributes"]["noise"]["association"]
    assert plan["mutual_information_normalized"] > 0.8  # plan decides churn; its missing rows blur it a little
    assert noise["mutual_information_normalized"] < 0.02
    assert plan["mutual_information"] > 20 * noise["mutual_information"]
    assert target["ranking"][0]["attribute"] == "plan"
    assert "association" not in result["attributes"]["churned"]
    # a BINARY target is numeric-like: Pearson's r with a numeric attribute is that of pandas
    assert noise["correlation"] == pytest.approx(typed["noise"].corr(typed["churned"]), abs=1e-9)


def test_pearson_with_a_numeric_target_is_exact_and_skips_rows_without_a_target():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(size=n)
    typed = pd.DataFrame({"x": x, "z": rng.normal(size=n), "price": 3 * x + rng.normal(size=n)})
    typed.loc[rng.random(n) < 0.1, "x"] = np.nan
    typed.loc[rng.random(n) < 0.1, "price"] = np.nan
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    _, result = _run(typed, invalid, _schema("price", x="NUMERIC", z="NUMERIC", price="NUMERIC"))
    for name in ("x", "z"):
        association = result["attributes"][name]["association"]
        assert association["correlation"] == pytest.approx(typed[name].corr(typed["price"]), abs=1e-9)
        assert association["correlation_rows"] == int((typed[name].notna() & typed["price"].notna()).sum())
        assert association["sample_rows"] == int(typed["price"].notna().sum())
    assert result["attributes"]["x"]["association"]["mutual_information_normalized"] > 0.3
    assert result["attributes"]["z"]["association"]["mutual_information_normalized"] < 0.05
    assert result["target"]["summary"]["mean"] == pytest.approx(typed["price"].mean(), rel=1e-9)


def test_a_categorical_target_gets_class_counts_and_a_text_the_token_that_tells():
    rng = np.random.default_rng(5)
    n = 2000
    words = rng.choice(WORDS, (n, 3))
    label = np.where((words == "refund").any(axis=1), "angry", "calm")
    typed = pd.DataFrame({"note": _objects([" ".join(w) for w in words], np.zeros(n, bool)), "mood": label})
    typed["mood"] = typed["mood"].astype(object)
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    _, result = _run(typed, invalid, _schema("mood", note="TEXT", mood="CATEGORICAL"), chunks=(n // 2, n - n // 2))
    assert result["target"]["class_counts"] == typed["mood"].value_counts().to_dict()
    association = result["attributes"]["note"]["association"]
    assert association["tokens"][0]["token"] == "refund"
    assert association["mutual_information_normalized"] == pytest.approx(1.0)
    assert association["correlation"] is None


def test_more_rows_than_the_sample_keeps_memory_bounded_and_quantiles_close():
    rng = np.random.default_rng(11)
    n, size = 60_000, 4000
    typed = pd.DataFrame({"k": np.arange(n, dtype=float), "v": rng.exponential(2.0, n)})
    typed["key"] = _objects([str(i) for i in range(n)], np.zeros(n, bool))
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    chunks = (7000,) * 8 + (n - 56_000,)
    schema = _schema(None, k="NUMERIC", v="NUMERIC", key="CATEGORICAL")
    accumulator, result = _run(typed, invalid, schema, chunks=chunks, sample_size=size, distinct_cap=1000)

    sample = accumulator.sample()
    assert len(sample) == accumulator.sample_rows == result["sample_rows"] == size
    assert (sample["key"] == sample["k"].astype(int).astype(str)).all()  # whole rows, not mixed columns
    assert abs(sample["k"].mean() / n - 0.5) < 0.02  # uniform over the stream, not the first rows
    stats = result["attributes"]["v"]
    assert result["approximate"] is True and stats["approximate"] is True
    assert stats["mean"] == pytest.approx(typed["v"].mean(), rel=1e-9)  # still exact
    assert stats["std"] == pytest.approx(typed["v"].std(), rel=1e-9)
    for name in ("p25", "p50", "p75", "p95"):
        assert stats["quantiles"][name] == pytest.approx(typed["v"].quantile(QUANTILES[name]), rel=0.08)
    assert sum(stats["histogram"]["counts"]) == size

    key = result["attributes"]["key"]
    assert key["distinct_is_lower_bound"] is True and key["distinct"] > 1000
    assert key["distinct_estimate"] == pytest.approx(n, rel=0.1)


def test_past_the_distinct_cap_heavy_hitters_keep_counts_within_the_error_bound():
    rng = np.random.default_rng(2)
    n = 20_000
    heavy = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    values = np.where(rng.random(n) < 0.4, [f"rare{i}" for i in range(n)], heavy)
    typed = pd.DataFrame({"c": _objects(values, np.zeros(n, bool))})
    invalid = pd.DataFrame(False, index=typed.index, columns=typed.columns)
    _, result = _run(typed, invalid, _schema(None, c="CATEGORICAL"), chunks=(5000,) * 4, distinct_cap=100, top_k=3)
    stats = result["attributes"]["c"]
    truth = typed["c"].value_counts()
    assert stats["top_counts_exact"] is False
    assert [t["value"] for t in stats["top_values"]] == ["a", "b", "c"]
    bound = stats["count_error_bound"]
    assert 0 < bound <= n / 101
    for top in stats["top_values"]:
        assert truth[top["value"]] - bound <= top["count"] <= truth[top["value"]]
    assert stats["distinct"] <= len(truth)  # a lower bound
    assert stats["distinct_estimate"] == pytest.approx(len(truth), rel=0.05)


def test_same_chunks_and_seed_give_the_same_result():
    typed, invalid, schema = _churn(n=1500, seed=1)
    options = {"sample_size": 500, "seed": 4}
    first = json.dumps(_run(typed, invalid, schema, chunks=(400, 600, 500), **options)[1])
    again = json.dumps(_run(typed, invalid, schema, chunks=(400, 600, 500), **options)[1])
    other_seed = _run(typed, invalid, schema, chunks=(400, 600, 500), sample_size=500, seed=5)[1]
    assert first == again
    assert json.loads(first)["attributes"]["tenure"]["mean"] == other_seed["attributes"]["tenure"]["mean"]
    assert json.loads(first)["attributes"]["tenure"]["quantiles"] != other_seed["attributes"]["tenure"]["quantiles"]


def test_result_is_plain_json_even_when_empty_or_infinite(churn):
    _, _, result = churn
    assert_plain_json(result)
    json.dumps(result, allow_nan=False)

    typed, invalid, schema = _churn(n=50)
    empty = StatisticsAccumulator(schema).result()
    assert_plain_json(empty)
    json.dumps(empty, allow_nan=False)
    assert empty["row_count"] == 0 and empty["attributes"]["tenure"]["mean"] is None

    typed.loc[:4, "tenure"] = np.inf
    _, result = _run(typed, invalid, schema, chunks=(50,))
    json.dumps(result, allow_nan=False)
    assert result["attributes"]["tenure"]["invalid"] == int(invalid["tenure"].sum()) + 5
    assert result["attributes"]["tenure"]["max"] == typed["tenure"].replace(np.inf, np.nan).max()


def test_a_chunk_without_an_attribute_is_refused():
    typed, invalid, schema = _churn(n=10)
    with pytest.raises(ValueError, match="lacks attributes \\['plan'\\]"):
        StatisticsAccumulator(schema).update(typed.drop(columns="plan"), invalid)
