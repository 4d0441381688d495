"""Datasources end to end: data in the loopback S3, created and read back through the REST API of a real server.

Covers one file, a prefix of plain and gzipped files, the three ways to give a schema, overrides, random and
sequential splits, statistics against pandas, invalid rows under and over the limit, every kind of bad input,
type inference on real datasets, and the CLI's describe.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from mlsvc.datasources.values import MISSING_TOKENS
from tests.s3server import s3_auth_enforced
from tests.servers import REPO, RunningServer, run_cli, start_server, stop_server

CHURN = REPO / "datasources" / "churn.csv"
CHURN_BYTES = CHURN.read_bytes()
TERMINAL = ("COMPLETED", "FAILED")


# --- helpers ---


@pytest.fixture
def put(s3_client: Any, s3_bucket: str) -> Any:
    """Put bytes (or text) at a key of the test's bucket; returns the object's s3:// URI."""

    def _put(key: str, body: bytes | str) -> str:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)
        return f"s3://{s3_bucket}/{key}"

    return _put


def create(api: httpx.Client, **body: Any) -> str:
    response = api.post("/v1/datasources", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait(api: httpx.Client, *ids: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Poll every datasource until it is COMPLETED or FAILED; all of them, in order."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for ds_id in ids:
            if ds_id not in done:
                body = api.get(f"/v1/datasources/{ds_id}").json()
                if body["status"] in TERMINAL:
                    done[ds_id] = body
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: {[i for i in ids if i not in done]}")
        if len(done) < len(ids):
            time.sleep(0.1)
    return [done[i] for i in ids]


def completed(api: httpx.Client, **body: Any) -> dict[str, Any]:
    (ds,) = wait(api, create(api, **body))
    assert ds["status"] == "COMPLETED", ds["message"]
    return ds


def assert_failed_cleanly(ds: dict[str, Any], *fragments: str, schema: dict[str, Any] | None = None) -> str:
    """FAILED with a message holding every fragment, no traceback, and nothing half-made on the resource: no
    statistics or counts, and no schema but the one the caller gave."""
    assert ds["status"] == "FAILED", ds
    message = ds["message"]
    for fragment in fragments:
        assert fragment in message, message
    assert "internal error" not in message and "Traceback" not in message
    assert ds["statistics"] is None
    assert (ds["schema"] is None) if schema is None else (ds["schema"]["attributes"] == schema["attributes"])
    assert ds["row_count"] is None and ds["used_row_count"] is None
    return str(message)


def types_of(ds: dict[str, Any]) -> dict[str, str]:
    return {a["attributeName"]: a["attributeType"] for a in ds["schema"]["attributes"]}


def declared(attributes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A datasource's attributes as its schema file declared them: without the missing tokens the job settles per
    column (internet_service keeps its frequent "none" as a level; tests/test_missing_values.py checks them)."""
    return [{k: v for k, v in a.items() if k != "missingValues"} for a in attributes]


def churn_pandas() -> pd.DataFrame:
    """churn.csv as pandas reads it, with the reader's NA-like tokens as missing too (pandas' are a subset), but
    for internet_service's "none": a fifth of the rows, so a level of that CATEGORICAL column, not missing."""
    frame = pd.read_csv(io.BytesIO(CHURN_BYTES), dtype=str, keep_default_na=False)
    typed = frame.apply(lambda s: s.str.strip().mask(s.str.strip().str.lower().isin(MISSING_TOKENS)))
    typed["internet_service"] = frame["internet_service"].str.strip()
    return typed


def csv_bytes(frame: pd.DataFrame, header: bool = True) -> bytes:
    return frame.to_csv(index=False, header=header, lineterminator="\n").encode()


# --- one file, a prefix, gzip ---


def test_one_file_gives_schema_counts_and_statistics_equal_to_pandas(api: httpx.Client, put: Any) -> None:
    uri = put("data/churn.csv", CHURN_BYTES)
    ds = completed(api, data_uri=uri, target="churned")
    assert ds["files"] == [uri] and ds["progress"] == 1.0
    assert ds["row_count"] == ds["used_row_count"] == 5000 and ds["invalid_row_count"] == 0
    assert ds["schema"]["targetAttributeName"] == "churned" and ds["schema"]["rowId"] == "customer_id"
    types = types_of(ds)
    stats = ds["statistics"]["attributes"]
    frame = churn_pandas()
    numeric_read = pd.read_csv(io.BytesIO(CHURN_BYTES))  # pandas' own number parsing and NA handling
    assert types["tenure_months"] == types["monthly_charges"] == types["total_charges"] == "NUMERIC"
    assert types["contract"] == types["payment_method"] == "CATEGORICAL"
    assert types["senior_citizen"] == "BINARY"
    checked = {"NUMERIC": 0, "CATEGORICAL": 0, "BINARY": 0}
    for name, kind in types.items():
        s = stats[name]
        assert s["count"] == 5000
        assert s["missing"] == int(frame[name].isna().sum()), name
        assert s["invalid"] == 0
        if kind == "NUMERIC":
            values = numeric_read[name]
            assert s["missing"] == int(values.isna().sum())
            assert s["min"] == pytest.approx(values.min()) and s["max"] == pytest.approx(values.max())
            assert s["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert s["std"] == pytest.approx(values.std(), rel=1e-9)  # pandas' std is the sample std (ddof=1)
            assert s["quantiles"]["p50"] == pytest.approx(values.median())
            assert s["quantiles"]["p95"] == pytest.approx(values.quantile(0.95))
            assert sum(s["histogram"]["counts"]) == values.notna().sum()
        elif kind == "CATEGORICAL":
            counts = frame[name].value_counts()
            assert s["distinct"] == len(counts), name
            top = {t["value"]: t["count"] for t in s["top_values"]}
            assert len(top) == min(20, len(counts))
            assert top == {k: int(counts[k]) for k in top}, name  # each count as pandas counts it
            others = counts.drop(list(top))
            assert others.empty or others.max() <= min(top.values())  # and they are the most frequent
        else:
            ones = frame[name].str.lower().isin(["1", "yes", "true", "y", "t", "1.0"]).sum()
            assert (s["ones"], s["zeros"]) == (int(ones), int(frame[name].notna().sum() - ones)), name
        checked[kind] += 1
    assert all(checked.values()), checked
    target = ds["statistics"]["target"]
    assert types["churned"] == "BINARY"  # yes/no
    assert target["class_counts"] == {
        "1": int((frame["churned"] == "yes").sum()),
        "0": int((frame["churned"] == "no").sum()),
    }
    for name in types:
        if name != "churned":
            association = stats[name]["association"]
            assert 0.0 <= association["mutual_information_normalized"] <= 1.0
    ranked = [r["attribute"] for r in target["ranking"]]
    assert ranked[0] in ("contract", "tenure_months", "support_calls_90d")  # churn's strongest drivers
    schema_file = api.get(f"/v1/datasources/{ds['id']}/schema")
    assert schema_file.status_code == 200 and schema_file.json()["attributes"] == ds["schema"]["attributes"]


def test_a_prefix_of_plain_gzipped_and_empty_files(api: httpx.Client, put: Any, s3_bucket: str) -> None:
    lines = CHURN_BYTES.decode().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    uris = [
        put("parts/part-0.csv", header + "".join(body[:2000])),
        put("parts/part-1.csv.gz", gzip.compress((header + "".join(body[2000:3500])).encode())),
        put("parts/part-2.csv", ""),  # writers of parts leave empty ones behind
        put("parts/sub/part-3.CSV", header + "".join(body[3500:])),
    ]
    put("parts/_SUCCESS", "")
    put("parts/notes.txt", "not data")
    put("parts2/other.csv", header + "".join(body[:10]))  # a sibling prefix is not part of it
    ds = completed(api, data_uri=f"s3://{s3_bucket}/parts", target="churned")
    assert ds["files"] == sorted(uris)
    assert ds["row_count"] == ds["used_row_count"] == 5000
    whole = completed(api, data_uri=put("whole.csv", CHURN_BYTES), target="churned")
    for name in ("tenure_months", "total_charges"):
        for key in ("min", "max", "mean", "std", "missing"):
            assert ds["statistics"]["attributes"][name][key] == pytest.approx(
                whole["statistics"]["attributes"][name][key], rel=1e-12
            )
    assert ds["statistics"]["target"]["class_counts"] == whole["statistics"]["target"]["class_counts"]


# --- schemas: beside the data, schema_uri, inline, overrides ---


def _churn_schema(**changes: Any) -> dict[str, Any]:
    schema = json.loads((REPO / "datasources" / "churn.csv.schema").read_text())
    return {**schema, **changes}


def _retyped(schema: dict[str, Any], **types: str) -> dict[str, Any]:
    attributes = [
        {**a, "attributeType": types.get(a["attributeName"], a["attributeType"])} for a in schema["attributes"]
    ]
    return {**schema, "attributes": attributes}


def test_a_schema_file_beside_the_data_is_used(api: httpx.Client, put: Any, s3_bucket: str) -> None:
    # Types inference would not choose, so the test sees the file's hand in the result.
    beside = _retyped(_churn_schema(), support_calls_90d="CATEGORICAL", senior_citizen="CATEGORICAL")
    one = put("beside/churn.csv", CHURN_BYTES)
    put("beside/churn.csv.schema", json.dumps(beside))
    lines = CHURN_BYTES.decode().splitlines(keepends=True)
    put("folder/a.csv", "".join(lines[:2001]))
    put("folder/b.csv", lines[0] + "".join(lines[2001:]))
    folder = _retyped(_churn_schema(), tenure_months="CATEGORICAL")
    put("folder/.schema", json.dumps(folder))
    put("sibling/a.csv", "".join(lines[:2001]))
    sibling = _retyped(_churn_schema(), monthly_charges="CATEGORICAL")
    put("sibling.schema", json.dumps(sibling))  # the folder's name + .schema, beside the folder
    first, second, third = wait(
        api,
        create(api, data_uri=one),
        create(api, data_uri=f"s3://{s3_bucket}/folder/"),
        create(api, data_uri=f"s3://{s3_bucket}/sibling"),
    )
    assert first["status"] == "COMPLETED" and second["status"] == "COMPLETED" and third["status"] == "COMPLETED"
    assert declared(third["schema"]["attributes"]) == sibling["attributes"] and third["row_count"] == 2000
    assert declared(first["schema"]["attributes"]) == beside["attributes"]
    assert first["schema"]["targetAttributeName"] == "churned" and first["schema"]["rowId"] == "customer_id"
    assert first["statistics"]["attributes"]["support_calls_90d"]["type"] == "CATEGORICAL"
    assert declared(second["schema"]["attributes"]) == folder["attributes"] and second["row_count"] == 5000


def test_schema_uri_and_inline_schema(api: httpx.Client, put: Any) -> None:
    data = put("x/churn.csv", CHURN_BYTES)
    given = _retyped(_churn_schema(), region="NUMERIC")
    schema_uri = put("schemas/churn.json", json.dumps(given))
    # Inline, on a file without a header line: the schema names the columns, in order.
    lines = CHURN_BYTES.decode().splitlines(keepends=True)
    headerless = put("x/churn-noheader.csv", "".join(lines[1:]))
    inline = _retyped(
        _churn_schema(dataFileContainsHeader=False, targetAttributeName="contract"), phone_service="CATEGORICAL"
    )
    by_uri, by_body = wait(
        api, create(api, data_uri=data, schema_uri=schema_uri), create(api, data_uri=headerless, schema=inline)
    )
    assert by_uri["status"] == "COMPLETED" and declared(by_uri["schema"]["attributes"]) == given["attributes"]
    assert by_uri["statistics"]["attributes"]["region"]["type"] == "NUMERIC"
    assert by_body["status"] == "COMPLETED", by_body["message"]
    assert by_body["row_count"] == 5000 and by_body["schema"]["targetAttributeName"] == "contract"
    assert by_body["statistics"]["attributes"]["phone_service"]["top_values"][0]["value"] in ("yes", "no")
    assert by_body["statistics"]["attributes"]["tenure_months"]["mean"] == pytest.approx(
        pd.read_csv(CHURN)["tenure_months"].mean()
    )


def test_attribute_types_target_and_row_id_overrides(api: httpx.Client, put: Any) -> None:
    uri = put("o/churn.csv", CHURN_BYTES)
    ds = completed(
        api,
        data_uri=uri,
        target="support_calls_90d",
        row_id="customer_id",
        attribute_types={"region": "CATEGORICAL", "senior_citizen": "NUMERIC", "churned": "CATEGORICAL"},
    )
    schema = ds["schema"]
    assert schema["targetAttributeName"] == "support_calls_90d" and schema["rowId"] == "customer_id"
    assert types_of(ds)["senior_citizen"] == "NUMERIC" and types_of(ds)["churned"] == "CATEGORICAL"
    assert ds["statistics"]["target"]["name"] == "support_calls_90d"
    expected = pd.read_csv(CHURN)["support_calls_90d"].mean()
    assert ds["statistics"]["target"]["summary"]["mean"] == pytest.approx(expected)
    assert ds["statistics"]["attributes"]["senior_citizen"]["mean"] == pytest.approx(
        pd.read_csv(CHURN)["senior_citizen"].mean()
    )


# --- rearrangement ---


def _splitting(**kw: Any) -> dict[str, Any]:
    return {"splitting": kw}


def test_random_split_and_its_complement_are_disjoint_cover_all_rows_and_are_reproducible(
    api: httpx.Client, put: Any
) -> None:
    uri = put("split/churn.csv", CHURN_BYTES)
    train = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "randomSeed": "seed-1"}
    ids = [
        create(api, data_uri=uri, target="churned", rearrangement=_splitting(**train)),
        create(api, data_uri=uri, target="churned", rearrangement=_splitting(**train, complement=True)),
        create(
            api,
            data_uri=uri,
            target="churned",
            rearrangement=_splitting(**{**train, "percentBegin": 70, "percentEnd": 100}),
        ),
        create(api, data_uri=uri, target="churned", rearrangement=_splitting(**train), name="again"),
        create(api, data_uri=uri, target="churned", rearrangement=_splitting(**{**train, "randomSeed": "other"})),
    ]
    a, complement, upper, again, other = wait(api, *ids)
    assert all(d["status"] == "COMPLETED" for d in (a, complement, upper, again, other))
    assert a["row_count"] == complement["row_count"] == 5000
    assert a["used_row_count"] + complement["used_row_count"] == 5000
    assert 3300 < a["used_row_count"] < 3700  # about 70 %
    assert complement["used_row_count"] == upper["used_row_count"]
    assert again["used_row_count"] == a["used_row_count"]
    # Disjoint and covering, level by level: each level's rows split exactly between the two.
    whole = churn_pandas()
    for name in ("contract", "payment_method", "internet_service"):
        got: dict[str, int] = {}
        for part in (a, complement):
            for top in part["statistics"]["attributes"][name]["top_values"]:
                got[top["value"]] = got.get(top["value"], 0) + top["count"]
        assert got == {k: int(v) for k, v in whole[name].value_counts().items()}, name
    tenure = pd.to_numeric(whole["tenure_months"])
    sums = [p["statistics"]["attributes"]["tenure_months"]["mean"] * p["used_row_count"] for p in (a, complement)]
    assert sum(sums) == pytest.approx(tenure.sum())
    churners = [p["statistics"]["attributes"]["churned"]["ones"] for p in (a, complement)]
    assert sum(churners) == int((whole["churned"] == "yes").sum())
    # The same seed picks the same rows; another seed other rows.
    for key in ("mean", "std", "min", "max"):
        assert (
            again["statistics"]["attributes"]["monthly_charges"][key]
            == a["statistics"]["attributes"]["monthly_charges"][key]
        )
    assert (
        other["statistics"]["attributes"]["monthly_charges"]["mean"]
        != a["statistics"]["attributes"]["monthly_charges"]["mean"]
    )


def test_sequential_split_takes_the_rows_in_file_order(api: httpx.Client, put: Any) -> None:
    uri = put("seq/churn.csv", CHURN_BYTES)
    first, rest = wait(
        api,
        create(api, data_uri=uri, rearrangement=_splitting(percentBegin=0, percentEnd=70)),
        create(api, data_uri=uri, rearrangement=_splitting(percentBegin=0, percentEnd=70, complement=True)),
    )
    assert (first["used_row_count"], rest["used_row_count"]) == (3500, 1500)
    frame = pd.read_csv(CHURN)
    assert first["statistics"]["attributes"]["tenure_months"]["mean"] == pytest.approx(
        frame["tenure_months"].iloc[:3500].mean()
    )
    assert rest["statistics"]["attributes"]["total_charges"]["mean"] == pytest.approx(
        frame["total_charges"].iloc[3500:].mean()
    )


# --- invalid rows ---


def _amounts(rows: int, bad_every: int | None, ragged: list[int] = ()) -> tuple[bytes, list[int]]:
    """id,amount,plan rows; every ``bad_every``-th amount is garbage; rows at ``ragged`` lose a field.
    Returns the bytes and the file line numbers of the garbage amounts."""
    out, bad_lines = ["id,amount,plan"], []
    for i in range(rows):
        line = len(out) + 1
        if i in ragged:
            out.append(f"{i},{i * 1.5}")
            continue
        amount = "n/a-ish" if bad_every and i % bad_every == 0 else f"{i * 1.5}"
        if amount == "n/a-ish":
            bad_lines.append(line)
        out.append(f"r{i},{amount},{'abc'[i % 3]}")
    return ("\n".join(out) + "\n").encode(), bad_lines


def test_invalid_rows_under_the_limit_are_counted_and_skipped(api: httpx.Client, put: Any) -> None:
    data, bad_lines = _amounts(1000, bad_every=25, ragged=[10, 501])  # 4 % bad values, 2 ragged rows
    uri = put("inv/under.csv", data)
    ds = completed(api, data_uri=uri, attribute_types={"amount": "NUMERIC"})
    assert ds["row_count"] == 1000
    assert ds["invalid_row_count"] == 40 + 2 and ds["used_row_count"] == 1000 - 42
    invalid = ds["statistics"]["invalid_rows"]
    assert invalid["by_column"] == {"amount": 40} and invalid["wrong_field_count"] == 2
    examples = invalid["examples"]["by_column"]["amount"]
    assert [e["line"] for e in examples] == bad_lines[:5]
    assert all(e["value"] == "n/a-ish" and e["file"] == uri for e in examples)
    assert invalid["examples"]["wrong_field_count"] == [
        f"{uri} line 12: 2 fields where the header has 3",
        f"{uri} line 503: 2 fields where the header has 3",
    ]
    assert ds["statistics"]["attributes"]["amount"]["count"] == 958  # skipped rows are not in the statistics


def test_invalid_rows_over_the_limit_fail_naming_columns_and_lines(api: httpx.Client, put: Any) -> None:
    data, bad_lines = _amounts(1000, bad_every=5)  # 20 %
    over = put("inv/over.csv", data)
    few, few_lines = _amounts(1000, bad_every=50)  # 2 %, over a per-datasource limit of 1 %
    strict = put("inv/strict.csv", few)
    ragged = put("inv/ragged.csv", "a,b,c\n" + "".join("1,2,3\n" if i % 4 else "1,2\n" for i in range(200)))
    results = wait(
        api,
        create(api, data_uri=over, attribute_types={"amount": "NUMERIC"}),
        create(api, data_uri=strict, attribute_types={"amount": "NUMERIC"}, max_invalid_fraction=0.01),
        create(api, data_uri=strict, attribute_types={"amount": "NUMERIC"}, max_invalid_fraction=0.05),
        create(api, data_uri=ragged),
    )
    message = assert_failed_cleanly(
        results[0], "200 of 1000 rows are invalid", "limit of 10%", "'amount'", "max_invalid_fraction", over
    )
    assert ", ".join(f"line {n} 'n/a-ish'" for n in bad_lines[:5]) in message
    assert_failed_cleanly(results[1], "20 of 1000 rows are invalid", "limit of 1%", f"line {few_lines[0]}")
    assert results[2]["status"] == "COMPLETED" and results[2]["invalid_row_count"] == 20
    assert_failed_cleanly(
        results[3],
        "50 of 200 rows are invalid",
        "50 rows have the wrong number of fields",
        f"{ragged} line 2: 2 fields where the header has 3",
        "line 6:",
    )


# --- bad input ---


def test_every_kind_of_bad_input_fails_with_a_clear_message_and_nothing_half_made(
    api: httpx.Client, put: Any, s3_bucket: str
) -> None:
    good = completed(api, data_uri=put("ok/churn.csv", CHURN_BYTES))
    big_head = "id,text\n" + "".join(f"{i},{'x' * 50}\n" for i in range(6000))  # ~350 KB, past the 256 KB peek
    gz = gzip.compress(CHURN_BYTES * 20)
    cases = {
        "missing bucket": (
            dict(data_uri="s3://no-such-bucket-mlsvc/churn.csv"),
            ["bucket 'no-such-bucket-mlsvc' does not exist", "s3://no-such-bucket-mlsvc/churn.csv"],
        ),
        "missing key": (
            dict(data_uri=f"s3://{s3_bucket}/ok/Churn.csv"),
            [
                f"no object at s3://{s3_bucket}/ok/Churn.csv",
                "check the key and its case",
                f"did you mean s3://{s3_bucket}/ok/churn.csv",
            ],
        ),
        "missing prefix": (
            dict(data_uri=f"s3://{s3_bucket}/nothing-here/"),
            [f"no .csv or .csv.gz files under s3://{s3_bucket}/nothing-here/"],
        ),
        "empty file": (dict(data_uri=put("bad/empty.csv", "")), ["bad/empty.csv is empty"]),
        "blank lines only": (dict(data_uri=put("bad/blank.csv", "\n\n  \n")), ["bad/blank.csv is empty"]),
        "header only": (
            dict(data_uri=put("bad/header.csv", "id,amount,plan\n")),
            ["bad/header.csv holds only a header line (id, amount, plan) and no data rows"],
        ),
        "header only, with a schema": (
            dict(
                data_uri=put("bad/header2.csv", "a,b"),
                schema={
                    "attributes": [
                        {"attributeName": "a", "attributeType": "NUMERIC"},
                        {"attributeName": "b", "attributeType": "NUMERIC"},
                    ]
                },
            ),
            ["bad/header2.csv has no data rows (at most a header line)"],
        ),
        "target not a column": (
            dict(data_uri=good["data_uri"], target="churn"),
            ["target column 'churn' not found", "'churned'"],
        ),
        "row id not a column": (dict(data_uri=good["data_uri"], row_id="id"), ["row_id column 'id' not found"]),
        "override of a missing column": (
            dict(data_uri=good["data_uri"], attribute_types={"Region": "NUMERIC"}),
            ["column 'Region' not found", "'region'"],
        ),
        "schema names missing columns": (
            dict(
                data_uri=good["data_uri"],
                schema={
                    **_churn_schema(),
                    "targetAttributeName": "churn",
                    "attributes": [
                        *_churn_schema()["attributes"][:-1],
                        {"attributeName": "churn", "attributeType": "BINARY"},
                    ],
                },
            ),
            ["the schema names columns that", "does not have: ['churn']", "'churned'"],
        ),
        "schema misses a column": (
            dict(
                data_uri=good["data_uri"],
                schema={**_churn_schema(), "attributes": _churn_schema()["attributes"][1:], "rowId": None},
            ),
            ["has columns the schema does not describe: ['customer_id']", "excludedAttributeNames"],
        ),
        "headerless file of another width": (
            dict(data_uri=put("bad/narrow.csv", "1,2\n3,4\n"), schema=_churn_schema(dataFileContainsHeader=False)),
            ["the schema has 18 attributes but the first row of", "has 2 fields"],
        ),
        "schema file not JSON": (
            dict(data_uri=good["data_uri"], schema_uri=put("bad/s.schema", "{not json")),
            ["schema_uri s3://", "bad/s.schema", "not valid JSON"],
        ),
        "schema_uri missing": (
            dict(data_uri=good["data_uri"], schema_uri=f"s3://{s3_bucket}/bad/none.schema"),
            ["schema_uri", f"no object at s3://{s3_bucket}/bad/none.schema"],
        ),
        "non-UTF-8 at the start": (
            dict(data_uri=put("bad/latin1.csv", "name,city\nAda,Z\u00fcrich\n".encode("latin-1"))),
            ["bad/latin1.csv is not valid UTF-8", "line 2", "fc", "'ü'", "UTF-8"],
        ),
        "non-UTF-8 past the start": (
            dict(data_uri=put("bad/latin1-late.csv", big_head.encode() + "6000,caf\u00e9\n".encode("cp1252"))),
            ["bad/latin1-late.csv is not valid UTF-8", "line 6002", "column 'text'", "e9"],
        ),
        "not gzip at all": (
            dict(data_uri=put("bad/plain.csv.gz", CHURN_BYTES)),
            ["bad/plain.csv.gz is not a valid gzip file", "rename"],
        ),
        "truncated gzip": (
            dict(data_uri=put("bad/cut.csv.gz", gz[: len(gz) // 2])),
            ["bad/cut.csv.gz is not a valid gzip file", "cut short"],
        ),
        "corrupt gzip": (
            dict(data_uri=put("bad/corrupt.csv.gz", gz[:2000] + bytes(5000) + gz[7000:])),
            ["bad/corrupt.csv.gz is not a valid gzip file"],
        ),
        "runaway quote": (
            dict(data_uri=put("bad/quote.csv", 'a,b\n1,"oops\n' + "2,3\n" * 40000)),
            ["bad/quote.csv", "line 2", "quot"],
        ),
    }
    ids = {name: create(api, **body) for name, (body, _) in cases.items()}
    results = dict(zip(ids, wait(api, *ids.values()), strict=True))
    for name, (body, fragments) in cases.items():
        try:
            assert_failed_cleanly(results[name], *fragments, schema=body.get("schema"))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    # The bad ones changed nothing else.
    again = api.get(f"/v1/datasources/{good['id']}").json()
    assert again["status"] == "COMPLETED" and again["row_count"] == 5000 and again["updated_at"] == good["updated_at"]
    failed = {d["id"] for d in api.get("/v1/datasources", params={"status": "FAILED", "limit": 1000}).json()["items"]}
    assert set(ids.values()) <= failed


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [("ftp://host/x.csv", "ftp"), ("hdfs://nn/data/", "hdfs"), ("gs://bucket/x.csv", "gs"), ("s3:/bucket/x.csv", "s3")],
)
def test_an_unknown_uri_scheme_is_refused_at_create(api: httpx.Client, uri: str, scheme: str) -> None:
    response = api.post("/v1/datasources", json={"data_uri": uri})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (
        error["code"] == "unsupported_uri"
        and f"'{scheme}'" in error["message"]
        and "s3://bucket/key" in error["message"]
    )
    assert api.post("/v1/datasources", json={"data_uri": CHURN.as_posix(), "schema_uri": uri}).status_code == 400


def test_access_denied_fails_with_what_to_check(api: httpx.Client, put: Any, s3_server: str) -> None:
    uri = put("secret/churn.csv", CHURN_BYTES)
    # The server is another process on the same S3 endpoint: with credentials checked, its requests are refused.
    with s3_auth_enforced(s3_server):
        (ds,) = wait(api, create(api, data_uri=uri))
    assert_failed_cleanly(ds, f"access to {uri} was denied (InvalidAccessKeyId)", "AWS_ACCESS_KEY_ID")
    assert completed(api, data_uri=uri)["row_count"] == 5000  # and nothing stuck once access is back


# --- limits: a second server with a record limit and local data roots ---


@pytest.fixture(scope="module")
def limited(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    root = tmp_path_factory.mktemp("data-root")
    server = start_server(
        tmp_path_factory.mktemp("limited-home"), {"MLSVC_MAX_RECORD_BYTES": "1000", "MLSVC_LOCAL_ROOTS": str(root)}
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, root
    finally:
        stop_server(server)


def test_a_record_larger_than_the_limit_fails_and_local_paths_stay_inside_the_roots(
    limited: tuple[httpx.Client, Path], put: Any, tmp_path: Path
) -> None:
    client, root = limited
    rows = "".join(f"{i},short\n" for i in range(50))
    big = put("limit/big.csv", f'id,text\n{rows}51,"{"y" * 3000}"\n52,after\n')
    fine = put("limit/fine.csv", f"id,text\n{rows}")
    inside = root / "inside.csv"
    inside.write_bytes(CHURN_BYTES)
    outside = tmp_path / "outside.csv"
    outside.write_bytes(CHURN_BYTES)
    big_ds, fine_ds, local_ds, root_ds = wait(
        client,
        create(client, data_uri=big),
        create(client, data_uri=fine),
        create(client, data_uri=inside.as_uri()),
        create(client, data_uri=str(root)),
    )
    assert_failed_cleanly(big_ds, big, "line 52", "3002 bytes", "limit of 1000 bytes", "MLSVC_MAX_RECORD_BYTES")
    assert fine_ds["status"] == "COMPLETED" and fine_ds["row_count"] == 50
    assert local_ds["status"] == "COMPLETED" and local_ds["row_count"] == 5000
    # The root folder itself: its sibling "root.schema" is outside the roots, so it is simply not looked at.
    assert root_ds["status"] == "COMPLETED", root_ds["message"]
    assert root_ds["files"] == [str(inside)]
    for refused in (str(outside), outside.as_uri(), str(root / ".." / outside.name), "/etc/passwd"):
        response = client.post("/v1/datasources", json={"data_uri": refused})
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "path_not_allowed" and "MLSVC_LOCAL_ROOTS" in error["message"]
        assert str(root) in error["message"]
    names = [d["data_uri"] for d in client.get("/v1/datasources", params={"limit": 1000}).json()["items"]]
    assert str(outside) not in names and "/etc/passwd" not in names


# --- inference on real datasets ---


def _sklearn_frames() -> dict[str, tuple[pd.DataFrame, str, dict[str, str]]]:
    """Each dataset as a person would export it, with the types a person would choose for its columns."""
    frames: dict[str, tuple[pd.DataFrame, str, dict[str, str]]] = {}
    iris = load_iris(as_frame=True)
    frame = iris.data.rename(columns=lambda c: c.replace(" (cm)", "_cm").replace(" ", "_"))
    frame["species"] = iris.target_names[iris.target]
    frames["iris"] = (frame, "species", {**dict.fromkeys(frame.columns[:4], "NUMERIC"), "species": "CATEGORICAL"})
    wine = load_wine(as_frame=True)
    frame = wine.data.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    frame["cultivar"] = [f"cultivar_{t}" for t in wine.target]
    frames["wine"] = (frame, "cultivar", {**dict.fromkeys(frame.columns[:-1], "NUMERIC"), "cultivar": "CATEGORICAL"})
    cancer = load_breast_cancer(as_frame=True)
    frame = cancer.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame["malignant"] = 1 - cancer.target  # sklearn's 1 is benign
    frames["breast_cancer"] = (
        frame,
        "malignant",
        {**dict.fromkeys(frame.columns[:-1], "NUMERIC"), "malignant": "BINARY"},
    )
    diabetes = load_diabetes(as_frame=True, scaled=False)
    frame = diabetes.data.rename(
        columns={
            "bp": "blood_pressure",
            "s1": "total_cholesterol",
            "s2": "ldl",
            "s3": "hdl",
            "s4": "cholesterol_hdl_ratio",
            "s5": "log_triglycerides",
            "s6": "blood_sugar",
        }
    )
    frame["disease_progression"] = diabetes.target
    expected = {**dict.fromkeys(frame.columns, "NUMERIC"), "sex": "CATEGORICAL"}
    frames["diabetes"] = (frame, "disease_progression", expected)
    return frames


def _mixed_frame(n: int = 400) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(5)
    words = [
        "great",
        "service",
        "slow",
        "delivery",
        "friendly",
        "staff",
        "price",
        "too",
        "high",
        "will",
        "return",
        "never",
        "again",
        "quality",
        "excellent",
        "poor",
        "packaging",
        "late",
        "fast",
        "helpful",
    ]
    frame = pd.DataFrame(
        {
            "order_id": [f"ORD-{100000 + i}" for i in range(n)],
            "zip": [f"{z:05d}" for z in rng.integers(501, 99950, n)],
            "plan_code": rng.integers(1, 4, n),
            "age": rng.integers(18, 90, n),
            "active": rng.choice(["yes", "no", "Yes", "NO"], n),
            "signup_date": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
            "review": [" ".join(rng.choice(words, rng.integers(4, 14))) for _ in range(n)],
            "score": np.where(rng.random(n) < 0.1, "NA", rng.normal(50, 10, n).round(2).astype(str)),
            "amount": [f"{v:,.2f}" for v in rng.uniform(10, 50000, n)],
            "country": rng.choice(["DE", "FR", "US", "JP", "BR"], n),
        }
    )
    expected = {
        "order_id": "CATEGORICAL",
        "zip": "CATEGORICAL",
        "plan_code": "CATEGORICAL",
        "age": "NUMERIC",
        "active": "BINARY",
        "signup_date": "CATEGORICAL",
        "review": "TEXT",
        "score": "NUMERIC",
        "amount": "NUMERIC",
        "country": "CATEGORICAL",
    }
    return frame, expected


@pytest.fixture(scope="module")
def mixed(api: httpx.Client, s3_client: Any, s3_server: str) -> Iterator[dict[str, Any]]:
    bucket = "mlsvc-test-mixed"
    s3_client.create_bucket(Bucket=bucket)
    frame, _ = _mixed_frame()
    s3_client.put_object(Bucket=bucket, Key="mixed.csv", Body=csv_bytes(frame))
    yield completed(api, data_uri=f"s3://{bucket}/mixed.csv", target="active")


def test_inference_on_real_datasets_chooses_what_a_person_would(
    api: httpx.Client, put: Any, mixed: dict[str, Any]
) -> None:
    frames = _sklearn_frames()
    ids = {
        name: create(api, data_uri=put(f"sk/{name}.csv", csv_bytes(frame)), target=target)
        for name, (frame, target, _) in frames.items()
    }
    for (name, (frame, target, expected)), ds in zip(frames.items(), wait(api, *ids.values()), strict=True):
        assert ds["status"] == "COMPLETED", (name, ds["message"])
        assert types_of(ds) == expected, name
        assert ds["row_count"] == len(frame) and ds["schema"]["targetAttributeName"] == target
        assert ds["schema"]["excludedAttributeNames"] == [] and ds["schema"]["rowId"] is None
    _, expected = _mixed_frame()
    assert types_of(mixed) == expected
    assert mixed["schema"]["rowId"] == "order_id"
    score = mixed["statistics"]["attributes"]["score"]
    assert score["missing"] == int((_mixed_frame()[0]["score"] == "NA").sum()) and score["invalid"] == 0
    amount = mixed["statistics"]["attributes"]["amount"]
    assert amount["max"] == pytest.approx(max(float(v.replace(",", "")) for v in _mixed_frame()[0]["amount"]))


def test_cli_describe_prints_the_schema_and_statistics_as_tables(
    mlsvc_server: RunningServer, mixed: dict[str, Any]
) -> None:
    shown = run_cli(mlsvc_server, "datasources", "describe", mixed["id"], env={"COLUMNS": "200"}, timeout=120)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    stats = mixed["statistics"]["attributes"]
    assert "rows: 400 in the files, 400 used, 0 invalid" in text
    for title in (
        "schema",
        "numeric attributes",
        "categorical attributes",
        "binary attributes",
        "text attributes",
        "target active (BINARY)",
    ):
        assert title in text, title
    lines: dict[str, str] = {}  # attribute → its rows in every table, joined
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3:
            lines[cells[1]] = lines.get(cells[1], "") + line
    age = stats["age"]
    assert f"{int(age['min'])}" in lines["age"] and f"{int(age['max'])}" in lines["age"]
    assert f"{age['mean']:.4g}" in lines["age"]
    country_top = stats["country"]["top_values"][0]
    assert f"{country_top['value']} ({country_top['count']})" in lines["country"]
    assert f"{stats['active']['true_fraction']:.1%}" in lines["active"]
    review = stats["review"]
    assert f"{review['length_mean']:.4g}" in lines["review"] and review["top_tokens"][0]["token"] in lines["review"]
    assert "row id" in lines["order_id"] and "a different value in every row" in lines["order_id"]
    assert "target" in lines["active"]
    assert f"MI {stats['age']['association']['mutual_information_normalized']:.3f}" in text
    assert f"r {stats['age']['association']['correlation']:+.3f}" in text
    assert "class 1" in text and "class 0" in text


# --- the job's reads ---


class _CountingStorage:
    """The job's storage, counting how often each file is opened for reading."""

    def __init__(self) -> None:
        from mlsvc.objects import RoutingObjectStore

        self._storage = RoutingObjectStore()
        self.opened: dict[str, int] = {}

    def open_read(self, uri: str) -> Any:
        self.opened[uri] = self.opened.get(uri, 0) + 1
        return self._storage.open_read(uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


@pytest.mark.parametrize(
    ("rearrangement", "reads"),
    [
        (None, 1),
        ({"splitting": {"percentEnd": 70, "strategy": "random", "randomSeed": "s"}}, 1),
        ({"splitting": {"percentEnd": 70, "strategy": "sequential"}}, 2),  # a counting pass, then the rows
    ],
)
def test_the_job_fetches_a_file_once_for_inference_and_its_pass(tmp_path: Path, rearrangement: Any, reads: int) -> None:
    from types import SimpleNamespace

    from mlsvc.datasources import job

    path = tmp_path / "churn.csv"
    path.write_bytes(CHURN_BYTES)
    objects = _CountingStorage()
    ds = {"data_uri": str(path), "target": "churned", "rearrangement": rearrangement}
    ctx = SimpleNamespace(
        resource=ds,
        objects=objects,
        settings=SimpleNamespace(max_record_bytes=1 << 20, dask_scheduler=None),
        progress=lambda *_, **__: None,
    )
    result = job.run(ctx)  # type: ignore[arg-type]
    assert objects.opened == {str(path): reads}
    assert result["row_count"] == len(pd.read_csv(CHURN))
