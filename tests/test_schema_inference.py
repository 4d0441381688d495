"""Schema inference, header detection, .schema files and token coercion on real and messy CSV data."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine

from mlsvc.datasources.schema import (
    apply_overrides,
    check_schema_columns,
    detect_header,
    infer_schema,
    schema_from_json,
    schema_to_json,
)
from mlsvc.datasources.values import (
    MISSING_TOKENS,
    coerce_array,
    coerce_frame,
    missing_mask,
    objects,
    parse_binary,
    parse_numeric,
    parse_text,
)
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Attribute, AttributeType, Schema

NUMERIC, CATEGORICAL, BINARY, TEXT = (
    AttributeType.NUMERIC,
    AttributeType.CATEGORICAL,
    AttributeType.BINARY,
    AttributeType.TEXT,
)


def as_csv_text(frame: pd.DataFrame, *, header: bool = True) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=header)
    return buf.getvalue()


def read_raw(text: str, *, header: bool = True) -> pd.DataFrame:
    """What the datasource reader hands to inference: every cell a raw string token."""
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, header=0 if header else None)


def roundtrip(frame: pd.DataFrame) -> pd.DataFrame:
    return read_raw(as_csv_text(frame))


def types_of(schema: Schema) -> dict[str, AttributeType]:
    return {a.attributeName: a.attributeType for a in schema.attributes}


def split_rows(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.splitlines()]


# --- scikit-learn's bundled datasets, written with meaningful names ---


def test_iris_measurements_numeric_species_categorical() -> None:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    frame["species"] = data.target_names[data.target]
    schema = infer_schema(roundtrip(frame), target="species")
    assert types_of(schema) == {
        "sepal_length": NUMERIC,
        "sepal_width": NUMERIC,
        "petal_length": NUMERIC,
        "petal_width": NUMERIC,
        "species": CATEGORICAL,
    }
    assert schema.targetAttributeName == "species"
    assert schema.rowId is None and schema.excludedAttributeNames == []
    assert schema.dataFileContainsHeader is True


def test_wine_chemistry_numeric_and_cultivar_target() -> None:
    data = load_wine(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace("/", "_per_"))
    frame["cultivar"] = np.asarray(data.target_names)[data.target]
    schema = infer_schema(roundtrip(frame), target="cultivar")
    types = types_of(schema)
    assert types.pop("cultivar") is CATEGORICAL
    assert set(types.values()) == {NUMERIC}, types  # magnesium and proline are integers, yet measurements
    assert len(types) == 13


def test_breast_cancer_flag_target_is_binary() -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame["malignant"] = 1 - data.target  # sklearn codes benign as 1
    schema = infer_schema(roundtrip(frame), target="malignant")
    types = types_of(schema)
    assert types.pop("malignant") is BINARY
    assert set(types.values()) == {NUMERIC} and len(types) == 30


def test_diabetes_coded_sex_is_categorical_progression_numeric() -> None:
    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.data.rename(columns={"bp": "blood_pressure", "s1": "serum_tc", "s4": "serum_tch"})
    frame["disease_progression"] = data.target
    schema = infer_schema(roundtrip(frame), target="disease_progression")
    types = types_of(schema)
    assert types["sex"] is CATEGORICAL  # written as 1.0 / 2.0: a code, not an amount
    assert types["age"] is NUMERIC
    assert types["disease_progression"] is NUMERIC
    assert {t for n, t in types.items() if n != "sex"} == {NUMERIC}


def test_digits_pixels_numeric_and_label_categorical() -> None:
    data = load_digits(as_frame=True)
    frame = data.data.iloc[:400].copy()
    frame["digit_label"] = data.target.iloc[:400]
    schema = infer_schema(roundtrip(frame), target="digit_label")
    types = types_of(schema)
    assert types.pop("digit_label") is CATEGORICAL  # ten integer levels under a name that says label
    sample = frame.drop(columns="digit_label")
    for name, kind in types.items():
        values = set(sample[name].unique())
        if len(values) == 1:
            assert kind is NUMERIC, name  # an always-blank pixel is still a number
        elif values == {0.0, 1.0}:
            assert kind is BINARY, name  # only 0 and 1 seen in the sample
        else:
            assert kind is NUMERIC, (name, sorted(values))


def test_headerless_iris_gets_positional_names() -> None:
    data = load_iris(as_frame=True)
    text = as_csv_text(data.frame, header=False)
    assert detect_header(split_rows(text)[:50]) is False
    assert detect_header(split_rows(as_csv_text(data.frame))[:50]) is True
    schema = infer_schema(read_raw(text, header=False), has_header=False, target="col_5")
    assert [a.attributeName for a in schema.attributes] == [f"col_{i}" for i in range(1, 6)]
    assert schema.dataFileContainsHeader is False
    assert schema.targetAttributeName == "col_5"
    assert set(types_of(schema).values()) == {NUMERIC}


# --- a messy churn table ---

REVIEW_WORDS = ["great", "slow", "support", "billing", "price", "network", "outage", "friendly", "rude", "cheap"]


def churn_frame(n: int = 600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    charges = rng.uniform(20, 120, n).round(2).astype(str).astype(object)
    garbage_rows = [5, 77, 99]
    charges[garbage_rows] = ["abc", "#VALUE!", "n/a?"]
    charges[[10, 11]] = ["NA", ""]
    total = [f"{v:,.2f}" for v in rng.uniform(0, 9000, n)]
    reviews = [" ".join(rng.choice(REVIEW_WORDS, size=int(rng.integers(4, 12)))) + f" ticket {i}" for i in range(n)]
    income_band = rng.choice(["1", "2", "3", "9"], n, p=[0.3, 0.3, 0.3, 0.1])
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "email": [f"user{i}@example.com" for i in range(n)],
            "account_number": rng.permutation(np.arange(10_000_000, 10_000_000 + 50 * n, 50))[:n].astype(str),
            "zip": rng.choice(["02134", "10001", "94105", "00501", "60614"], n),
            "store_ref": rng.choice(["0042", "0107", "0999", "1200"], n),
            "tenure_months": rng.integers(0, 73, n).astype(str),
            "num_children": rng.integers(0, 6, n).astype(str),
            "plan_code": rng.integers(1, 5, n).astype(str),
            "satisfaction": rng.integers(1, 6, n).astype(str),
            "income_band": income_band,
            "region": rng.choice(["north", "South", "east ", "west"], n),
            "payment_method": rng.choice(
                ["Bank transfer (automatic)", "Credit card (automatic)", "Electronic check", "Mailed check"], n
            ),
            "signup_date": rng.choice(pd.date_range("2021-01-01", periods=365).strftime("%Y-%m-%d"), n),
            "monthly_charges": charges,
            "total_charges": total,
            "senior": rng.choice(["0", "1"], n),
            "paperless": rng.choice(["Yes", "no", "YES", "No", "NA"], n),
            "autopay": rng.choice(["True", "false", "TRUE", "False"], n),
            "has_partner": rng.choice(["y", "N", "Y", "n", ""], n),
            "review": reviews,
            "notes": rng.choice(["", "NA", "null", " "], n),
            "churned": rng.choice(["Yes", "No"], n),
        }
    )


@pytest.fixture(scope="module")
def churn_raw() -> pd.DataFrame:
    return roundtrip(churn_frame())


@pytest.fixture(scope="module")
def churn_schema(churn_raw: pd.DataFrame) -> Schema:
    return infer_schema(churn_raw, target="churned")


def test_churn_types_are_what_a_person_would_choose(churn_schema: Schema) -> None:
    assert types_of(churn_schema) == {
        "customer_id": CATEGORICAL,
        "email": CATEGORICAL,
        "account_number": CATEGORICAL,  # an identifier, whatever its digits
        "zip": CATEGORICAL,  # by name and by leading zeros
        "store_ref": CATEGORICAL,  # by leading zeros alone
        "tenure_months": NUMERIC,
        "num_children": NUMERIC,  # few levels, but a count
        "plan_code": CATEGORICAL,  # few levels, and a code
        "satisfaction": NUMERIC,  # a plain 1..5 scale keeps its order
        "income_band": CATEGORICAL,  # 1, 2, 3 and a 9 "unknown" sentinel
        "region": CATEGORICAL,
        "payment_method": CATEGORICAL,  # multi-word labels, yet few of them
        "signup_date": CATEGORICAL,
        "monthly_charges": NUMERIC,  # despite three garbage tokens
        "total_charges": NUMERIC,  # "1,234.56" thousands separators
        "senior": BINARY,
        "paperless": BINARY,
        "autopay": BINARY,
        "has_partner": BINARY,
        "review": TEXT,
        "notes": CATEGORICAL,  # never filled in
        "churned": BINARY,
    }


def test_churn_roles_and_exclusions(churn_schema: Schema) -> None:
    assert churn_schema.targetAttributeName == "churned"
    assert churn_schema.rowId == "customer_id"  # unique per row and named as an id
    # The other unique-per-row identifiers and the never-filled column cannot teach a model anything.
    assert churn_schema.excludedAttributeNames == ["email", "account_number", "notes"]
    features = {a.attributeName for a in churn_schema.feature_attributes()}
    assert {"customer_id", "email", "account_number", "notes", "churned"}.isdisjoint(features)
    assert "review" in features and "zip" in features


def test_coerce_frame_contract_on_churn(churn_raw: pd.DataFrame, churn_schema: Schema) -> None:
    typed, invalid = coerce_frame(churn_raw, churn_schema)
    assert list(typed.columns) == list(churn_raw.columns) and typed.index.equals(churn_raw.index)
    assert invalid.shape == churn_raw.shape and set(invalid.dtypes) == {np.dtype(bool)}
    for attribute in churn_schema.attributes:
        column = typed[attribute.attributeName]
        if attribute.attributeType in (NUMERIC, BINARY):
            assert column.dtype == np.float64, attribute
        else:
            assert column.dtype == object, attribute
            assert all(v is None or type(v) is str for v in column), attribute

    charges = typed["monthly_charges"]
    assert invalid.index[invalid["monthly_charges"]].tolist() == [5, 77, 99]
    assert charges.isna().sum() == 5  # three garbage tokens and two missing ones
    assert not invalid.loc[[10, 11], "monthly_charges"].any()  # missing is not invalid
    assert charges[0] == float(churn_raw.loc[0, "monthly_charges"])
    assert invalid.drop(columns="monthly_charges").to_numpy().sum() == 0

    raw_total = churn_raw["total_charges"]
    assert typed["total_charges"].tolist() == pytest.approx([float(v.replace(",", "")) for v in raw_total])

    assert set(typed["paperless"].dropna()) == {0.0, 1.0}
    expected_paperless = churn_raw["paperless"].str.lower().map({"yes": 1.0, "no": 0.0})
    pd.testing.assert_series_equal(typed["paperless"], expected_paperless, check_dtype=False, check_names=False)
    assert typed["autopay"].tolist() == [1.0 if v.lower() == "true" else 0.0 for v in churn_raw["autopay"]]
    assert typed["has_partner"].isna().sum() == (churn_raw["has_partner"] == "").sum()

    assert set(typed["region"].dropna()) == {"north", "South", "east", "west"}  # stripped, case kept
    assert set(typed["plan_code"]) == {"1", "2", "3", "4"}
    assert typed["notes"].isna().all() and typed["notes"].map(lambda v: v is None).all()
    assert typed["zip"].str.startswith("0").any()  # leading zeros kept


def test_overrides_target_and_row_id_win(churn_raw: pd.DataFrame) -> None:
    schema = infer_schema(
        churn_raw,
        target="plan_code",
        row_id="email",
        overrides={"num_children": CATEGORICAL, "notes": "text", "customer_id": CATEGORICAL},
    )
    types = types_of(schema)
    assert types["num_children"] is CATEGORICAL and types["notes"] is TEXT
    assert schema.targetAttributeName == "plan_code" and schema.rowId == "email"
    # The caller typed customer_id and notes, so inference neither excludes them nor takes them as the row id.
    assert schema.excludedAttributeNames == ["account_number"]
    assert types["plan_code"] is CATEGORICAL  # the target is typed like any other column


@pytest.mark.parametrize(
    "kwargs",
    [{"target": "churn"}, {"row_id": "cust_id"}, {"overrides": {"tenure": NUMERIC}}],
)
def test_naming_a_missing_column_is_a_clear_error(churn_raw: pd.DataFrame, kwargs: dict[str, Any]) -> None:
    with pytest.raises(MlsvcError) as caught:
        infer_schema(churn_raw, **kwargs)
    assert caught.value.code is ErrorCode.INVALID_DATA
    missing = next(iter(kwargs["overrides"])) if "overrides" in kwargs else next(iter(kwargs.values()))
    assert caught.value.message.startswith(f"column '{missing}' not found")
    assert "; columns are ['customer_id', 'email'" in caught.value.message
    # A near name is suggested: 'churn' for 'churned', 'cust_id' for 'customer_id', 'tenure' for 'tenure_months'.
    assert "(did you mean '" in caught.value.message


def test_bad_override_type_and_conflicting_roles(churn_raw: pd.DataFrame) -> None:
    with pytest.raises(MlsvcError) as caught:
        infer_schema(churn_raw, overrides={"zip": "DATE"})
    assert caught.value.code is ErrorCode.INVALID_REQUEST and "'DATE'" in caught.value.message
    with pytest.raises(MlsvcError) as caught:
        infer_schema(churn_raw, target="churned", row_id="churned")
    assert caught.value.code is ErrorCode.INVALID_REQUEST


def test_apply_overrides_on_a_given_schema() -> None:
    schema = Schema(
        attributes=[
            Attribute(attributeName="id", attributeType=CATEGORICAL),
            Attribute(attributeName="x", attributeType=NUMERIC),
            Attribute(attributeName="y", attributeType=CATEGORICAL),
        ],
        excludedAttributeNames=["y"],
    )
    updated = apply_overrides(schema, target="y", row_id="id", overrides={"x": CATEGORICAL})
    assert updated.targetAttributeName == "y" and updated.rowId == "id"
    assert updated.excludedAttributeNames == []  # the target has a role of its own
    assert updated.attribute("x") == Attribute(attributeName="x", attributeType=CATEGORICAL)
    assert schema.attribute("x") == Attribute(attributeName="x", attributeType=NUMERIC)  # not mutated


# --- more inference cases ---


def test_integer_row_counter_is_row_id_but_integer_amounts_are_not() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "row": np.arange(1, 201),
            "income": rng.permutation(np.arange(20_000, 220_000, 1000))[:200],
            "x": rng.normal(size=200),
        }
    )
    schema = infer_schema(roundtrip(frame))
    assert schema.rowId == "row"
    assert types_of(schema)["income"] is NUMERIC and "income" not in schema.excludedAttributeNames
    assert types_of(schema)["x"] is NUMERIC and schema.excludedAttributeNames == []


def test_small_sample_does_not_claim_uniqueness_unless_it_is_the_whole_file() -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Lima", "Pune", "Kyiv", "Baku", "Riga"], "sales": range(6)})
    raw = roundtrip(frame)
    assert infer_schema(raw).rowId is None
    assert infer_schema(raw, total_rows_hint=6).rowId == "city"


def test_binary_needs_both_values_and_only_binary_tokens() -> None:
    raw = pd.DataFrame(
        {
            "always_yes": ["yes"] * 30,
            "sex": (["M", "F"] * 15),
            "answer": (["yes", "no", "maybe"] * 10),
            "flag_with_garbage": ["0", "1"] * 14 + ["x", "1"],
        }
    )
    types = types_of(infer_schema(raw))
    assert types == {
        "always_yes": CATEGORICAL,
        "sex": CATEGORICAL,
        "answer": CATEGORICAL,
        "flag_with_garbage": BINARY,
    }


def test_sample_columns_must_be_named_once() -> None:
    for columns, fragment in ((["a", "b", "a"], "repeated: ['a']"), (["a", " ", "c"], "non-blank")):
        with pytest.raises(MlsvcError) as caught:
            infer_schema(pd.DataFrame([["1", "2", "3"]] * 3, columns=columns))
        assert caught.value.code is ErrorCode.INVALID_DATA and fragment in caught.value.message
    headerless = infer_schema(pd.DataFrame([["1", "x"]] * 3), has_header=False)
    assert [a.attributeName for a in headerless.attributes] == ["col_1", "col_2"]


def test_empty_sample_is_refused() -> None:
    with pytest.raises(MlsvcError) as caught:
        infer_schema(pd.DataFrame({"a": pd.Series([], dtype=str)}))
    assert caught.value.code is ErrorCode.INVALID_DATA


# --- header detection ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age,plan,churned\n34,basic,yes\n51,pro,no\n", True),
        ("34,basic,yes\n51,pro,no\n", False),
        ("plan,churned\nbasic,yes\npro,no\nbasic,no\npro,yes\n", True),  # all strings, levels repeat
        ("basic,yes\npro,no\nbasic,no\npro,yes\n", False),  # first row recurs below
        ("name,comment\nAnn,a long remark here\nBob,another one entirely\n", True),  # nothing says otherwise
        ("Ann,this was a long remark written by a customer about the product\nBob,another one\n", False),
        ("id,score,score\n1,2,3\n4,5,6\n", True),  # still a header; column_names reports the duplicate
        ("sepal_length,sepal_width\n", True),  # header-only file
        ("1,2\n", False),
        (",x,y\n0,1.5,2\n1,2.5,3\n", True),  # pandas' unnamed index column
        ("", False),
    ],
)
def test_detect_header(text: str, expected: bool) -> None:
    assert detect_header(split_rows(text)) is expected


def test_detect_header_on_churn_both_ways() -> None:
    frame = churn_frame(100)
    assert detect_header(split_rows(as_csv_text(frame.drop(columns=["review", "payment_method"])))) is True
    headerless = as_csv_text(frame.drop(columns=["review", "payment_method"]), header=False)
    assert detect_header(split_rows(headerless)) is False


# --- .schema files ---


def test_schema_json_roundtrip_is_amazon_ml_shaped(churn_schema: Schema) -> None:
    text = schema_to_json(churn_schema)
    data = json.loads(text)
    assert data["version"] == "1.0" and data["dataFormat"] == "CSV"
    assert data["targetAttributeName"] == "churned" and data["rowId"] == "customer_id"
    assert data["attributes"][0] == {"attributeName": "customer_id", "attributeType": "CATEGORICAL"}
    assert "rowWeight" not in data  # unset fields are left out, as in Amazon ML's own files
    assert text.startswith("{\n  ") and text.endswith("}\n")
    assert schema_from_json(text) == churn_schema
    assert schema_from_json(text.encode()) == churn_schema


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"version": "1.0"}', "attributes"),
        ('{"attributes": [{"attributeName": "a", "attributeType": "DATE"}]}', "attributeType"),
        ('{"attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}], "targetAttributeName": "b"}', "'b'"),
        (b'{"attributes": "\xff"}', "UTF-8"),
    ],
)
def test_schema_from_json_rejects_bad_files(text: str | bytes, fragment: str) -> None:
    with pytest.raises(MlsvcError) as caught:
        schema_from_json(text)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert fragment in caught.value.message


def test_check_schema_columns(churn_schema: Schema) -> None:
    names = [a.attributeName for a in churn_schema.attributes]
    check_schema_columns(churn_schema, names)
    with pytest.raises(MlsvcError, match=r"schema attributes \['churned'\] are not columns"):
        check_schema_columns(churn_schema, names[:-1])
    with pytest.raises(MlsvcError, match=r"data columns \['extra'\] are not in the schema"):
        check_schema_columns(churn_schema, [*names, "extra"])


# --- token parsing ---


def test_missing_tokens_any_case() -> None:
    tokens = ["", "  ", "NA", "n/a", "N/A", "NaN", "nan", "null", "NULL", "None", "none", "?", "#N/A", "-", None]
    assert missing_mask(pd.Series(tokens, dtype=object)).all()
    kept = ["0", "unknown", "Na+", "n", "--5", "missing"]
    assert not missing_mask(pd.Series(kept, dtype=object)).any()


def test_parse_numeric_accepts_numbers_and_flags_the_rest() -> None:
    tokens = pd.Series(
        ["1", " -2.5 ", "+3", "1e3", "4.", ".5", "1,234.5", "-12,000", "NA", None, "abc", "1,5", "inf", "1e400", "$3"],
        dtype="str",
    )
    values, invalid = parse_numeric(tokens)
    assert values.dtype == np.float64 and invalid.dtype == bool
    np.testing.assert_array_equal(values[:8], [1, -2.5, 3, 1000, 4, 0.5, 1234.5, -12000])
    assert np.isnan(values[8:]).all()
    assert invalid.tolist() == [False] * 10 + [True] * 5


def test_parse_numeric_fast_and_slow_paths_agree() -> None:
    clean = pd.Series(["1", "2.5", "NA", "inf"], dtype=object)
    dirty = pd.Series(["1", "2.5", "NA", "inf", "x"], dtype=object)
    clean_values, clean_invalid = parse_numeric(clean)
    dirty_values, dirty_invalid = parse_numeric(dirty)
    np.testing.assert_array_equal(clean_values, dirty_values[:4])
    np.testing.assert_array_equal(clean_invalid, dirty_invalid[:4])


def test_parse_binary_and_text() -> None:
    tokens = pd.Series(["1", "0", "1.0", "0.0", "TRUE", "false", "T", "f", "Yes", "NO", "y", "N", "", "maybe"])
    values, invalid = parse_binary(tokens)
    np.testing.assert_array_equal(values[:12], [1, 0] * 6)
    assert np.isnan(values[12:]).all() and invalid.tolist() == [False] * 13 + [True]
    text = parse_text(pd.Series([" Fiber optic ", "NA", None, "DSL"], index=[3, 4, 5, 6], name="internet"))
    assert text.dtype == object and text.name == "internet" and text.index.tolist() == [3, 4, 5, 6]
    assert text.tolist() == ["Fiber optic", None, None, "DSL"]


MESSY_TOKENS = [
    *sorted(MISSING_TOKENS),
    *["NA", "N/A", "NaN", "-NAN", "Null", "NONE", " ", "\t", "inf", "-Inf", "1e400", "1", "0", "1.0", "0.0", "yes"],
    *["No", " Y ", "t", "F", "true", "FALSE", "3", "-2.5", "+4", ".5", "5.", "1,234.5", "1,5", "12,000", "abc"],
    *[" 7 ", "basic", " basic", "basic ", "Basic", "x y z", "1_000", "0x10", "\u0663", "1e-300", "caf\u00e9"],
    "\u00a0basic\u00a0",
]


@pytest.mark.parametrize("seed", range(40))
def test_coerce_array_reads_arrow_tokens_as_the_token_by_token_path_does(seed: int) -> None:
    """The column-at-a-time paths (one cast, one reading per distinct token) give what normalising every
    token gives, whichever tokens a column mixes."""
    rng = np.random.default_rng(seed)
    pool = rng.choice(MESSY_TOKENS, size=rng.integers(1, 12), replace=False)
    tokens = [str(t) for t in rng.choice(pool, size=int(rng.integers(0, 60)))]
    if seed % 3 == 0:  # plain numbers, the common case, with or without blanks
        tokens = [str(v) for v in np.round(rng.normal(size=len(tokens)), 3)] + ([""] if seed % 2 else [])
    series = pd.Series(tokens, dtype=object)
    for array in (pa.array(tokens, type=pa.string()), pc.dictionary_encode(pa.array(tokens, type=pa.string()))):
        numbers, bad = coerce_array(array, NUMERIC)
        expected, expected_bad = parse_numeric(series)
        np.testing.assert_array_equal(numbers, expected)
        np.testing.assert_array_equal(bad, expected_bad)
        flags, bad = coerce_array(array, BINARY)
        expected, expected_bad = parse_binary(series)
        np.testing.assert_array_equal(flags, expected)
        np.testing.assert_array_equal(bad, expected_bad)
        for kind in (CATEGORICAL, TEXT):
            texts, bad = coerce_array(array, kind)
            assert bad is None and list(objects(texts)) == parse_text(series).tolist()


@pytest.mark.parametrize(
    ("pair", "later"),
    [
        (("yes", "no"), None),
        (("1", "0"), None),
        (("True", "False"), None),
        (("yes",), None),
        (("no",), None),
        (("yes", "no"), "maybe"),  # an invalid token past the first rows the flags are told from
        (("yes", "no"), " yes"),
        (("yes", "no"), "YES"),
        (("yes", "no"), "NA"),
        (("yes", "no"), ""),
        (("y", "n"), "yes"),
    ],
)
def test_binary_columns_of_two_plain_flags_read_as_every_token_is(pair: tuple[str, ...], later: str | None) -> None:
    """The two-comparison path for a column of two flags as written agrees with normalising every token, also
    when a token past the rows the flags were told from is another flag, a missing word, blank or invalid."""
    rng = np.random.default_rng(len(pair))
    tokens = [str(t) for t in rng.choice(pair, size=300)]
    if later is not None:
        tokens[200] = later
    flags, bad = coerce_array(pa.array(tokens, type=pa.string()), BINARY)
    expected, expected_bad = parse_binary(pd.Series(tokens, dtype=object))
    np.testing.assert_array_equal(flags, expected)
    np.testing.assert_array_equal(bad, expected_bad)


def test_coerce_frame_subset_of_json_like_values() -> None:
    """Prediction-time records: any subset of attributes, values as JSON decoders produce them."""
    schema = infer_schema(roundtrip(churn_frame(200)), target="churned")
    raw = pd.DataFrame(
        {
            "tenure_months": [3, None, "12"],
            "autopay": [True, "no", None],
            "plan_code": [2, "3", None],
            "monthly_charges": [19.5, float("nan"), "oops"],
        }
    )
    typed, invalid = coerce_frame(raw, schema)
    assert typed["tenure_months"].tolist()[::2] == [3.0, 12.0] and np.isnan(typed["tenure_months"][1])
    assert typed["autopay"].tolist()[:2] == [1.0, 0.0]
    assert typed["plan_code"].tolist() == ["2", "3", None]
    assert invalid["monthly_charges"].tolist() == [False, False, True]
    with pytest.raises(MlsvcError, match=r"columns \['favourite_colour'\] are not in the schema"):
        coerce_frame(pd.DataFrame({"favourite_colour": ["red"]}), schema)
