"""Read plans: what a completed datasource or a bare data URI reads, file by file, and how it is typed and split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlsvc.datasources.plan import ReadPlan, model_schema, splitting_of
from mlsvc.datasources.scan import ScanCounts, count_rows, scan
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import RoutingObjectStore
from mlsvc.resources import Attribute, AttributeType, Schema

NUMERIC, CATEGORICAL = AttributeType.NUMERIC, AttributeType.CATEGORICAL


def _schema(**roles: str) -> Schema:
    attributes = [
        Attribute(attributeName="id", attributeType=CATEGORICAL),
        Attribute(attributeName="n", attributeType=NUMERIC),
        Attribute(attributeName="plan", attributeType=CATEGORICAL),
    ]
    return Schema(attributes=attributes, **roles)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two files of one datasource, their columns in different orders."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text("id,n,plan\n" + "".join(f"r{i},{i},basic\n" for i in range(6)))
    (folder / "b.csv").write_text("plan,n,id\n" + "".join(f"pro,{i},r{i}\n" for i in range(6, 10)))
    return folder


def _datasource(data: Path, **fields: Any) -> dict[str, Any]:
    return {
        "id": "ds-1",
        "files": [str(data / "a.csv"), str(data / "b.csv")],
        "schema": _schema(rowId="id").model_dump(mode="json"),
        "row_count": 10,
        **fields,
    }


def _ids(objects: RoutingObjectStore, plan: ReadPlan) -> list[str]:
    return pd.concat(c.typed for c in scan(objects, plan, ScanCounts()))["id"].tolist()


def test_a_datasource_plan_reads_each_file_by_its_own_header(data: Path) -> None:
    objects = RoutingObjectStore()
    ds = _datasource(data)
    plan = ReadPlan.of_datasource(objects, ds, Schema.model_validate(ds["schema"]), max_record_bytes=4096)
    assert [f.uri for f in plan.files] == ds["files"]
    assert plan.names_by_file == {ds["files"][0]: ["id", "n", "plan"], ds["files"][1]: ["plan", "n", "id"]}
    assert (plan.splitting, plan.total_rows, plan.row_id, plan.max_record_bytes) == (None, None, "id", 4096)
    assert plan.source == "datasource 'ds-1'" and not plan.needs_counting
    assert _ids(objects, plan) == [f"r{i}" for i in range(10)]


def test_a_sequential_split_is_placed_by_the_row_count_the_datasource_recorded(data: Path) -> None:
    objects = RoutingObjectStore()
    ds = _datasource(data, rearrangement={"splitting": {"percentBegin": 0, "percentEnd": 70}})
    plan = ReadPlan.of_datasource(objects, ds, Schema.model_validate(ds["schema"]))
    assert plan.splitting is not None and plan.splitting.percentEnd == 70
    assert plan.total_rows == 10 and count_rows(objects, plan) == 10
    assert _ids(objects, plan) == [f"r{i}" for i in range(7)]
    # One file at a time, sharing the counts, the split still places rows among all the files'.
    counts = ScanCounts()
    per_file = [c.typed["id"].tolist() for info in plan.files for c in scan(objects, plan.only(info), counts)]
    assert per_file == [[f"r{i}" for i in range(6)], ["r6"]]


def test_splitting_of_a_datasource_without_a_rearrangement_is_none() -> None:
    assert splitting_of({"rearrangement": None}) is None and splitting_of({}) is None
    split = splitting_of({"rearrangement": {"splitting": {"percentEnd": 30}}})
    assert split is not None and split.percentEnd == 30


def test_a_bare_uri_plan_types_the_attributes_given_and_carries_the_row_id(data: Path) -> None:
    objects = RoutingObjectStore()
    features = [Attribute(attributeName="n", attributeType=NUMERIC)]
    plan = ReadPlan.of_data_uri(objects, str(data), features, row_id="id")
    assert [a.attributeName for a in plan.schema.attributes] == ["n", "id"] and plan.schema.rowId == "id"
    assert plan.source == str(data) and plan.splitting is None
    chunks = pd.concat(c.typed for c in scan(objects, plan, ScanCounts()))
    assert set(chunks.columns) == {"id", "n"}  # "plan" is not asked for, so it is never typed
    assert chunks["n"].tolist() == [float(i) for i in range(10)]


def test_a_bare_uri_missing_a_feature_names_the_file_and_its_columns(data: Path) -> None:
    features = [Attribute(attributeName="tenure", attributeType=NUMERIC)]
    with pytest.raises(MlsvcError) as info:
        ReadPlan.of_data_uri(RoutingObjectStore(), str(data / "a.csv"), features)
    assert info.value.code == ErrorCode.INVALID_DATA and "['tenure']" in info.value.message


def test_model_schema_types_the_datasource_columns_as_the_model_was_trained() -> None:
    features = [Attribute(attributeName="id", attributeType=NUMERIC)]
    schema = model_schema(_schema(rowId="id", targetAttributeName="plan"), features, "ds-1")
    assert [(a.attributeName, a.attributeType) for a in schema.attributes] == [
        ("id", NUMERIC),
        ("n", NUMERIC),
        ("plan", CATEGORICAL),
    ]
    assert schema.targetAttributeName is None and schema.rowId == "id"
    with pytest.raises(MlsvcError, match=r"lacks attributes the model uses: \['tenure'\]"):
        model_schema(_schema(), [Attribute(attributeName="tenure", attributeType=NUMERIC)], "ds-1")
