"""JSON records are typed exactly as CSV tokens are, so a model sees at prediction what it saw at training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsvc.datasources.values import coerce_frame
from mlsvc.prediction.records import RecordParser, token
from mlsvc.resources import Attribute, AttributeType, Schema

VALUES = [
    None,
    "",
    " ",
    "NA",
    "n/a",
    "?",
    "-",
    "none",
    "3",
    3,
    0,
    1,
    -2.5,
    2.5e10,
    "1,234.5",
    "1,5",
    "12,000",
    "abc",
    " 7 ",
    "+4",
    ".5",
    "5.",
    "1e400",
    "inf",
    "nan",
    True,
    False,
    "yes",
    "No",
    "Y",
    "t",
    "1.0",
    "0.0",
    "basic",
    " Pro ",
    "1_000",
    "0x10",
    "٣",
    1e-300,
    # Numbers and booleans the parser reads without their token (as JSON gives them): the same answers.
    1.0,
    0.0,
    -0.0,
    2.0,
    float("nan"),
    float("inf"),
    -float("inf"),
    10**30,
]


@pytest.mark.parametrize("kind", list(AttributeType))
def test_records_type_like_csv_tokens(kind: AttributeType) -> None:
    features = [Attribute(attributeName="x", attributeType=kind)]
    records = [{"x": v} for v in VALUES]
    columns, warnings = RecordParser(features).parse(records)
    raw = pd.DataFrame({"x": [token(v) for v in VALUES]}, dtype=object)
    typed, invalid = coerce_frame(raw, Schema(attributes=features))
    expected = typed["x"].to_numpy()
    if kind in (AttributeType.NUMERIC, AttributeType.BINARY):
        np.testing.assert_array_equal(columns["x"], expected.astype(np.float64))
    else:
        assert list(columns["x"]) == list(expected)
    assert [bool(w) for w in warnings] == list(invalid["x"])


def test_unknown_and_nested_values_are_warned_about() -> None:
    features = [
        Attribute(attributeName="plan", attributeType=AttributeType.CATEGORICAL),
        Attribute(attributeName="n", attributeType=AttributeType.NUMERIC),
    ]
    columns, warnings = RecordParser(features).parse([{"plan": ["a"], "n": {"v": 1}, "extra": 1}, {}])
    assert columns["plan"][0] is None and np.isnan(columns["n"][0])
    assert len(warnings[0]) == 3 and "extra" in warnings[0][0] and warnings[1] == []
