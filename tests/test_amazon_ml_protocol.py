"""The pure parts of Amazon ML's face: Describe's comparators, order and pages; the checks of requests against
botocore's service model and the shaping of answers; the real-time throttle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from mlsvc.server.amazonml.describe import describe
from mlsvc.server.amazonml.models import _PeakRate
from mlsvc.server.amazonml.protocol import AmazonError, operation, parse_input, render_output

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Item:
    id: str
    name: str
    created_at: datetime


ITEMS = [
    Item(f"id-{i}", name, START + timedelta(minutes=i)) for i, name in enumerate(["beta", "alpha", "gamma", "alps"])
]
VARIABLES = {"Name": lambda i: i.name, "CreatedAt": lambda i: i.created_at}


def _ids(params: dict[str, object]) -> list[str]:
    page, _ = describe(ITEMS, params, VARIABLES, key=lambda i: i.id)
    return [i.id for i in page]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["id-0", "id-1", "id-2", "id-3"]),  # by CreatedAt, ascending
        ({"SortOrder": "dsc"}, ["id-3", "id-2", "id-1", "id-0"]),
        ({"FilterVariable": "Name"}, ["id-1", "id-3", "id-0", "id-2"]),  # sorted by the variable
        ({"FilterVariable": "Name", "EQ": "gamma"}, ["id-2"]),
        ({"FilterVariable": "Name", "NE": "gamma"}, ["id-1", "id-3", "id-0"]),
        ({"FilterVariable": "Name", "Prefix": "al"}, ["id-1", "id-3"]),
        ({"FilterVariable": "Name", "GT": "alps"}, ["id-0", "id-2"]),
        ({"FilterVariable": "Name", "GE": "alps"}, ["id-3", "id-0", "id-2"]),
        ({"FilterVariable": "Name", "LT": "beta"}, ["id-1", "id-3"]),
        ({"FilterVariable": "Name", "LE": "beta", "GT": "alpha"}, ["id-3", "id-0"]),
        ({"FilterVariable": "CreatedAt", "GE": str((START + timedelta(minutes=2)).timestamp())}, ["id-2", "id-3"]),
        ({"FilterVariable": "CreatedAt", "LT": "2026-01-01T00:01:00Z"}, ["id-0"]),
        ({"FilterVariable": "CreatedAt", "LE": "2026-01-01T00:01:00+00:00", "SortOrder": "dsc"}, ["id-1", "id-0"]),
    ],
)
def test_describe_compares_and_sorts_by_the_filter_variable(params: dict[str, object], expected: list[str]) -> None:
    assert _ids(params) == expected


def test_describe_pages_resume_after_the_last_item_and_belong_to_their_search() -> None:
    search = {"FilterVariable": "Name", "SortOrder": "dsc", "Limit": 3}
    first, token = describe(ITEMS, search, VARIABLES, key=lambda i: i.id)
    assert [i.name for i in first] == ["gamma", "beta", "alps"] and token
    rest, last = describe(ITEMS, {**search, "NextToken": token}, VARIABLES, key=lambda i: i.id)
    assert [i.name for i in rest] == ["alpha"] and last is None
    with pytest.raises(AmazonError, match="other filters"):
        describe(ITEMS, {"FilterVariable": "Name", "NextToken": token}, VARIABLES, key=lambda i: i.id)
    with pytest.raises(AmazonError, match="give FilterVariable"):
        describe(ITEMS, {"EQ": "x"}, VARIABLES, key=lambda i: i.id)
    with pytest.raises(AmazonError, match="epoch seconds or ISO 8601"):
        describe(ITEMS, {"FilterVariable": "CreatedAt", "GT": "yesterday"}, VARIABLES, key=lambda i: i.id)


def test_requests_are_checked_against_the_service_model_in_amazons_words() -> None:
    create = operation("AmazonML_20141212.CreateDataSourceFromS3")
    assert parse_input(create, b'{"DataSourceId": "ds-1", "DataSpec": {"DataLocationS3": "s3://b/k.csv"}}')
    cases = {
        b'{"DataSpec": {"DataLocationS3": "s3://b/k"}}': "Value null at 'dataSourceId' failed to satisfy constraint",
        b'{"DataSourceId": "a b", "DataSpec": {"DataLocationS3": "s3://b/k"}}': "regular expression pattern",
        b'{"DataSourceId": "ds", "DataSpec": {"DataLocationS3": "http://b/k"}}': "dataSpec.dataLocationS3",
        b'{"DataSourceId": "ds", "DataSpec": {"DataLocationS3": "s3://b"}, "Extra": 1}': "'Extra'",
        b'{"DataSourceId": "ds", "DataSpec": {"DataLocationS3": "s3://b"}, "ComputeStatistics": "yes"}': "boolean",
        b'{"DataSourceId": "' + b"x" * 65 + b'", "DataSpec": {"DataLocationS3": "s3://b"}}': "less than or equal to 64",
    }
    for body, expected in cases.items():
        with pytest.raises(AmazonError) as refused:
            parse_input(create, body)
        assert refused.value.code == "InvalidInputException" and expected in refused.value.message
    for body in (b"[1]", b"{not json"):
        with pytest.raises(AmazonError) as refused:
            parse_input(create, body)
        assert refused.value.code == "SerializationException"
    with pytest.raises(AmazonError) as unknown:
        operation("AmazonML_20141212.Train")
    assert unknown.value.code == "UnknownOperationException"
    rds = operation("AmazonML_20141212.CreateDataSourceFromRDS")
    body = orjson.dumps(
        {"DataSourceId": "d", "RoleARN": "r", "RDSData": {"DatabaseCredentials": {"Password": "short"}}}
    )
    with pytest.raises(AmazonError) as short:
        parse_input(rds, body)
    assert "greater than or equal to 8" in short.value.message and "short" not in short.value.message


def test_answers_carry_only_declared_members_in_their_declared_types() -> None:
    get = operation("AmazonML_20141212.GetMLModel")
    answer = orjson.loads(
        render_output(get, {"MLModelId": "m", "CreatedAt": START, "SizeInBytes": 12.0, "Message": None})
    )
    assert answer == {"MLModelId": "m", "CreatedAt": START.timestamp(), "SizeInBytes": 12}
    with pytest.raises(AssertionError, match="no members"):
        render_output(get, {"MLModelId": "m", "Accuracy": 1.0})


def test_an_endpoint_answers_up_to_its_peak_a_second() -> None:
    rate = _PeakRate()
    assert all(rate.admit("m", 200) for _ in range(200))
    assert not rate.admit("m", 200)
    assert rate.admit("other", 200)
