"""Missing-value tokens as a datasource reads them, and as every reading of a model's columns then agrees.

Through the REST API of a real server: a CATEGORICAL column where "none" fills a quarter of the rows keeps it as a
level (with a schema file declaring the column, as churn's does), a rare "NA" stays missing; `missing_values`
replaces the defaults and round-trips; a model trained there scores a real-time "none" as the level, and reads
its columns with its own tokens in evaluations and batches over a datasource that reads them otherwise. The
invalid values of skipped rows count in each attribute's statistics, as in the invalid rows' table, in the API and
in `mlsvc datasources describe`. Then the token rules themselves, without a server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from mlsvc.datasources.schema import LEVEL_MIN_FRACTION, LEVEL_MIN_ROWS, settle_missing_values
from mlsvc.datasources.statistics import StatisticsAccumulator
from mlsvc.datasources.values import MISSING_TOKENS, coerce_array, coerce_frame, missing_set, objects
from mlsvc.prediction.records import RecordParser
from mlsvc.resources import DEFAULT_MISSING_VALUES, Attribute, AttributeType, DataSourceCreate, Schema
from tests.rest import completed, error
from tests.servers import REPO, RunningServer, run_cli

ROWS = 600
RARE_NA = [3, 50, 400]  # plan: "NA" in three rows, a cell left empty
TENURE_NA = [10, 20]  # tenure: "NA", missing
ABC = 199  # tenure: "abc", invalid: the row is skipped (line 201, after the header)
DEFAULTS_BUT_NONE = sorted(MISSING_TOKENS - {"", "none"})
SCHEMA = {
    "version": "1.0",
    "targetAttributeName": "churned",
    "dataFormat": "CSV",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "service", "attributeType": "CATEGORICAL"},
        {"attributeName": "plan", "attributeType": "CATEGORICAL"},
        {"attributeName": "tenure", "attributeType": "NUMERIC"},
        {"attributeName": "churned", "attributeType": "BINARY"},
    ],
}


def _frame() -> pd.DataFrame:
    """Customers whose churn follows `service`: "none" (no internet, a quarter of them) churn, the others stay."""
    rng = np.random.default_rng(14)
    service = rng.choice(["DSL", "fiber", "none"], size=ROWS, p=[0.4, 0.35, 0.25])
    plan = rng.choice(["basic", "premium", "gold"], size=ROWS).astype(object)
    plan[RARE_NA] = "NA"
    tenure = rng.integers(0, 72, size=ROWS).astype(str).astype(object)
    tenure[TENURE_NA] = "NA"
    tenure[ABC] = "abc"
    churned = np.where(service == "none", rng.random(ROWS) < 0.95, rng.random(ROWS) < 0.05)
    return pd.DataFrame({"service": service, "plan": plan, "tenure": tenure, "churned": np.where(churned, "yes", "no")})


FRAME = _frame()
NONE_ROWS = int((FRAME["service"].drop(index=ABC) == "none").sum())  # in the rows used: not the invalid one


def _write(folder: Path, schema: dict[str, Any] | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customers.csv"
    FRAME.to_csv(path, index=False)
    if schema is not None:
        (folder / "customers.csv.schema").write_text(json.dumps(schema))
    return str(path)


def _attributes(ds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["attributeName"]: a for a in ds["schema"]["attributes"]}


def _top(stats: dict[str, Any]) -> dict[str, int]:
    return {t["value"]: t["count"] for t in stats["top_values"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("missing-values")
    return {"with_schema": _write(root / "declared", SCHEMA), "bare": _write(root / "bare")}


@pytest.fixture(scope="module")
def declared(api: httpx.Client, data: dict[str, str]) -> dict[str, Any]:
    """The datasource over the CSV with its schema file beside it, the default tokens."""
    return completed(api, "/v1/datasources", {"data_uri": data["with_schema"]})


@pytest.fixture(scope="module")
def model(api: httpx.Client, declared: dict[str, Any]) -> dict[str, Any]:
    # One family, so that what is checked is how the columns are read, not what a 2 s search finds on a busy machine.
    candidates = [{"family": "linear", "params": {}}]
    body = {"name": "missing-values", "datasource_id": declared["id"], "time_budget_s": 2, "candidates": candidates}
    return completed(api, "/v1/models", body)


# --- the datasource ---


def test_a_frequent_none_is_a_level_and_a_rare_na_is_missing_with_a_schema_file(declared: dict[str, Any]) -> None:
    assert declared["missing_values"] is None  # the defaults
    attributes = _attributes(declared)
    assert attributes["service"]["missingValues"] == DEFAULTS_BUT_NONE  # what the column reads as missing
    assert "missingValues" not in attributes["plan"] and "missingValues" not in attributes["tenure"]
    stats = declared["statistics"]["attributes"]
    assert stats["service"]["missing"] == 0 and _top(stats["service"])["none"] == NONE_ROWS
    assert stats["plan"]["missing"] == len(RARE_NA) and "NA" not in _top(stats["plan"])
    assert stats["tenure"]["missing"] == len(TENURE_NA)


def test_invalid_values_count_alike_in_the_attribute_statistics_and_the_invalid_rows(declared: dict[str, Any]) -> None:
    assert declared["invalid_row_count"] == 1 and declared["used_row_count"] == ROWS - 1
    statistics = declared["statistics"]
    assert statistics["invalid_rows"]["by_column"] == {"tenure": 1}
    assert statistics["invalid_rows"]["examples"]["by_column"]["tenure"][0]["line"] == ABC + 2
    assert statistics["attributes"]["tenure"]["invalid"] == 1
    assert all(s["invalid"] == 0 for name, s in statistics["attributes"].items() if name != "tenure")


def test_describe_shows_the_same_invalid_and_missing_figures(server: RunningServer, declared: dict[str, Any]) -> None:
    shown = run_cli(server, "datasources", "describe", declared["id"], env={"COLUMNS": "200"}, timeout=120)
    assert shown.returncode == 0, shown.stderr
    rows: dict[str, list[str]] = {}  # the first table row of each attribute: the schema table
    invalid_rows: dict[str, list[str]] = {}
    for line in shown.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")][1:-1]
        if len(cells) >= 5 and cells[0] in ("service", "plan", "tenure"):
            rows.setdefault(cells[0], cells)
        elif len(cells) == 3 and cells[0].startswith("column "):
            invalid_rows[cells[0]] = cells
    # attribute, type, role, missing, invalid
    assert rows["tenure"][3:5] == [str(len(TENURE_NA)), "1"], rows["tenure"]
    assert rows["service"][3:5] == ["0", "0"] and rows["plan"][3:5] == [str(len(RARE_NA)), "0"]
    assert invalid_rows["column tenure"][1] == "1" and f"line {ABC + 2} 'abc'" in invalid_rows["column tenure"][2]
    assert "missing values: the defaults and blank cells; service reads 'none' as a level" in shown.stdout


def test_the_churn_examples_none_is_internet_service_level(api: httpx.Client) -> None:
    ds = completed(api, "/v1/datasources", {"data_uri": str(REPO / "datasources" / "churn.csv")})
    churn = pd.read_csv(REPO / "datasources" / "churn.csv", dtype=str, keep_default_na=False)
    stats = ds["statistics"]["attributes"]["internet_service"]
    assert stats["missing"] == 0 and _top(stats)["none"] == int((churn["internet_service"] == "none").sum()) == 1108


def test_missing_values_replace_the_defaults_round_trip_and_identify_the_request(
    api: httpx.Client, data: dict[str, str]
) -> None:
    body = {"id": "ds-tokens-none-na", "data_uri": data["bare"], "target": "churned", "missing_values": ["none", "NA"]}
    ds = completed(api, "/v1/datasources", body)
    assert ds["missing_values"] == ["none", "NA"]
    assert all(a["missingValues"] == ["none", "NA"] for a in ds["schema"]["attributes"])
    stats = ds["statistics"]["attributes"]
    assert stats["service"]["missing"] == NONE_ROWS and "none" not in _top(stats["service"])
    assert stats["plan"]["missing"] == len(RARE_NA)
    # A retry with the same parameters is the same datasource; other tokens under the same id are a conflict.
    again = api.post("/v1/datasources", json=body)
    assert again.status_code in (200, 202) and again.json()["id"] == ds["id"]
    assert again.json()["missing_values"] == ["none", "NA"]
    error(api.post("/v1/datasources", json={**body, "missing_values": ["NA"]}), 409, "conflict")

    only_blanks = completed(api, "/v1/datasources", {"data_uri": data["bare"], "missing_values": []})
    stats = only_blanks["statistics"]["attributes"]
    assert stats["plan"]["missing"] == 0 and _top(stats["plan"])["NA"] == len(RARE_NA)
    assert stats["tenure"]["invalid"] == len(TENURE_NA) + 1 == only_blanks["invalid_row_count"]  # "NA" is no number


def test_an_attributes_own_missing_values_win(api: httpx.Client, data: dict[str, str]) -> None:
    schema = json.loads(json.dumps(SCHEMA))
    schema["attributes"][0]["missingValues"] = ["none"]
    ds = completed(api, "/v1/datasources", {"data_uri": data["bare"], "schema": schema})
    assert _attributes(ds)["service"]["missingValues"] == ["none"]
    assert ds["statistics"]["attributes"]["service"]["missing"] == NONE_ROWS


def test_bad_missing_values_are_refused(api: httpx.Client, data: dict[str, str]) -> None:
    for tokens in ("NA", ["x" * 65], ["NA"] * 101, [1]):
        message = error(
            api.post("/v1/datasources", json={"data_uri": data["bare"], "missing_values": tokens}),
            422,
            "validation_error",
        )
        assert "missing_values" in message, message


# --- the model: training, real time, evaluation and batch read its columns alike ---


def test_a_real_time_none_scores_as_the_level_it_was_trained_on(api: httpx.Client, model: dict[str, Any]) -> None:
    features = {a["attributeName"]: a for a in model["features"]}
    assert features["service"]["missingValues"] == DEFAULTS_BUT_NONE  # the model carries its column's tokens
    records = [
        {"service": "none", "plan": "basic", "tenure": 30},
        {"service": None, "plan": "basic", "tenure": 30},
        {"service": "DSL", "plan": "NA", "tenure": "NA"},
    ]
    answer = api.post("/v1/models/missing-values/predict", json={"records": records})
    assert answer.status_code == 200, answer.text
    none, blank, dsl = answer.json()["predictions"]
    assert none["warnings"] == [] and dsl["warnings"] == []  # "NA" is missing there: no invalid value
    assert none["predicted_label"] == "yes" and none["predicted_scores"]["yes"] > 0.75
    assert dsl["predicted_scores"]["yes"] < 0.25
    # Trained with "none" a level, the model never saw service missing: a blank is not the "none" customers.
    assert none["predicted_scores"]["yes"] - blank["predicted_scores"]["yes"] > 0.25


def _live(api: httpx.Client, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """P(yes) and the label of every row of ``frame`` (its features), predicted in real time, 100 records a request."""
    scores: list[float] = []
    labels: list[str] = []
    records = frame.drop(columns=["churned"]).to_dict("records")
    for start in range(0, len(records), 100):
        answer = api.post("/v1/models/missing-values/predict", json={"records": records[start : start + 100]})
        assert answer.status_code == 200, answer.text
        scores.extend(p["predicted_scores"]["yes"] for p in answer.json()["predictions"])
        labels.extend(p["predicted_label"] for p in answer.json()["predictions"])
    return np.array(scores), np.array(labels)


def test_evaluations_and_batches_read_the_models_columns_with_the_models_tokens(
    api: httpx.Client, model: dict[str, Any], declared: dict[str, Any], data: dict[str, str], tmp_path: Path
) -> None:
    live, labels = _live(api, FRAME)
    # A datasource over the same rows that reads "none" as missing: the model still reads it as its level.
    other = completed(
        api, "/v1/datasources", {"data_uri": data["bare"], "target": "churned", "missing_values": ["none", "NA"]}
    )
    used = FRAME.index != ABC
    truth = FRAME["churned"][used].to_numpy()
    expected_auc, expected_accuracy = roc_auc_score(truth == "yes", live[used]), np.mean(labels[used] == truth)
    for ds in (declared, other):
        evaluation = completed(api, "/v1/evaluations", {"model": "missing-values", "datasource_id": ds["id"]})
        assert evaluation["rows"] == ROWS - 1 and evaluation["metric"] == "BinaryAUC"
        assert evaluation["value"] == pytest.approx(expected_auc, rel=1e-9), ds["missing_values"]
        assert evaluation["metrics"]["accuracy"] == pytest.approx(expected_accuracy), ds["missing_values"]
    body = {"model": "missing-values", "datasource_id": other["id"], "output_uri": str(tmp_path / "out")}
    batch = completed(api, "/v1/batch-predictions", body)
    scored = pd.read_csv(batch["outputs"][0]["output"])
    assert len(scored) == ROWS
    np.testing.assert_allclose(scored["score"], live, atol=1e-9)
    assert scored["score"][FRAME["service"] == "none"].min() > 0.5


# --- the rules, without a server ---


def test_the_api_describes_the_default_tokens() -> None:
    description = DataSourceCreate.model_fields["missing_values"].description or ""
    assert ", ".join(DEFAULT_MISSING_VALUES) in description
    assert f"at least {LEVEL_MIN_FRACTION:.0%} (and {LEVEL_MIN_ROWS})" in description  # the rule as schema.py has it


def test_a_default_token_is_a_level_from_a_share_of_the_sampled_cells() -> None:
    schema = Schema(attributes=[Attribute(attributeName=n, attributeType=AttributeType.CATEGORICAL) for n in "abcd"])
    n = 2000  # 1 % is 20 cells, more than LEVEL_MIN_ROWS
    sample = pd.DataFrame(
        {
            "a": ["None"] * 20 + ["x"] * (n - 20),  # at the threshold, in any case: a level
            "b": ["NA"] * 19 + ["x"] * (n - 19),  # one short: missing
            "c": ["na"] * n,  # nothing but missing words: no level
            "d": [" n/a "] * 100 + ["?"] * 100 + ["x"] * (n - 200),  # both frequent: both levels
        }
    )
    settled = {a.attributeName: a.missingValues for a in settle_missing_values(schema, sample, None).attributes}
    assert settled["a"] == DEFAULTS_BUT_NONE and settled["b"] is None and settled["c"] is None
    assert settled["d"] == sorted(MISSING_TOKENS - {"", "n/a", "?"})
    small = pd.DataFrame({n: ["none"] * (LEVEL_MIN_ROWS - 1) + ["x"] for n in "abcd"})
    assert all(a.missingValues is None for a in settle_missing_values(schema, small, None).attributes)
    given = settle_missing_values(schema, sample, ["?"])
    assert all(a.missingValues == ["?"] for a in given.attributes)


def test_custom_tokens_read_alike_in_every_column_type_and_in_records() -> None:
    tokens = ["-999", "no", "Not Applicable At All", "ningún"]
    missing = missing_set(tokens)
    cells = ["5", "-999", " NOT applicable at ALL ", "NINGÚN", "none", "yes", "no", "", None, "7x"]
    column = pa.array(cells, type=pa.large_string())
    numbers, bad = coerce_array(column, AttributeType.NUMERIC, missing)
    assert np.isnan(numbers[1:5]).all() and numbers[0] == 5.0  # "-999" is missing, not the number
    assert bad.tolist() == [False] * 4 + [True, True, False, False, False, True]  # "none" is data here: invalid
    flags, bad = coerce_array(pa.array(["yes", "no", "y"], type=pa.large_string()), AttributeType.BINARY, missing)
    assert flags[0] == 1.0 and np.isnan(flags[1]) and flags[2] == 1.0 and not bad.any()
    levels, _ = coerce_array(column, AttributeType.CATEGORICAL, missing)
    assert objects(levels).tolist() == ["5", None, None, None, "none", "yes", None, None, None, "7x"]
    # A record's values read as the CSV's tokens do.
    kinds = {"n": AttributeType.NUMERIC, "c": AttributeType.CATEGORICAL, "t": AttributeType.TEXT}
    features = [Attribute(attributeName=k, attributeType=t, missingValues=tokens) for k, t in kinds.items()]
    records = [{k: v for k in kinds} for v in cells]
    columns, _ = RecordParser(features).parse(records)
    typed, _ = coerce_frame(pd.DataFrame({k: cells for k in kinds}, dtype=object), Schema(attributes=features))
    np.testing.assert_array_equal(columns["n"], typed["n"].to_numpy())
    assert columns["c"].tolist() == typed["c"].tolist() == columns["t"].tolist()


def test_skipped_rows_invalid_values_count_in_their_attributes_only() -> None:
    schema = Schema(
        attributes=[
            Attribute(attributeName="tenure", attributeType=AttributeType.NUMERIC),
            Attribute(attributeName="plan", attributeType=AttributeType.CATEGORICAL),
        ]
    )
    accumulator = StatisticsAccumulator(schema)
    accumulator.update_columns({"tenure": np.array([1.0, 2.0]), "plan": pa.array(["a", None])}, {}, 2)
    accumulator.add_skipped_invalid({"tenure": 3})
    result = accumulator.result()["attributes"]
    assert result["tenure"]["invalid"] == 3 and result["tenure"]["count"] == 2 and result["tenure"]["mean"] == 1.5
    assert result["plan"]["invalid"] == 0 and result["plan"]["missing"] == 1
    with pytest.raises(ValueError, match="not attributes"):
        accumulator.add_skipped_invalid({"churn": 1})
