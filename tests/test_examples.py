"""The examples as `make run` trains them (the same seeding code, a short budget): churn and fraud reach the
holdout AUC their generators' documented signal allows, and the fraud example's threshold story holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from mlsvc.client import choose_threshold
from tests.servers import RunningServer, start_server, stop_server, wait_done


@pytest.fixture(scope="module")
def example_server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server: RunningServer = start_server(
        tmp_path_factory.mktemp("examples-home"), {"MLSVC_EXAMPLES": "1", "MLSVC_EXAMPLES_BUDGET_S": "8"}
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def examples(example_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=example_server.url, timeout=60) as api:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(api.get("/v1/models").json()["items"]) < 2:
            time.sleep(0.5)
        yield api


def test_make_run_says_where_to_go_at_once_and_each_example_as_it_completes(
    example_server: RunningServer, examples: httpx.Client
) -> None:
    for name in ("churn", "fraud", "recommendation"):
        assert wait_done(examples, f"/v1/models/example-{name}-v1")["status"] == "COMPLETED"
    deadline = time.monotonic() + 10
    while "the examples are ready" not in example_server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = example_server.log_text()
    url = example_server.url
    first_done = text.index("example churn: COMPLETED") if "example churn: COMPLETED" in text else len(text)
    for hint in (f"API docs:   {url}/docs", f"mlflow ui --backend-store-uri '{example_server.mlflow_uri}'"):
        assert hint in text[:first_done], text
    assert text.index("Then try:") < first_done
    for name, metric in (("churn", "BinaryAUC"), ("fraud", "BinaryAUC"), ("recommendation", "")):
        line = next(line for line in text.splitlines() if line.startswith(f"example {name}: COMPLETED after "))
        assert metric in line and " s: " in line, line
    assert "the examples are ready" in text


@pytest.mark.parametrize(("name", "floor"), [("churn", 0.78), ("fraud", 0.88)])
def test_each_example_trains_to_the_auc_its_signal_allows(examples: httpx.Client, name: str, floor: float) -> None:
    model = wait_done(examples, f"/v1/models/example-{name}-v1")
    assert model["status"] == "COMPLETED", model["message"]
    # Generators document holdout AUCs of about 0.84 (churn) and 0.95 (fraud); chance is 0.5.
    assert model["metrics"]["BinaryAUC"] > floor
    assert model["aliases"] == ["production"]


def test_a_threshold_chosen_for_a_target_precision_catches_more_fraud(examples: httpx.Client) -> None:
    model = wait_done(examples, "/v1/models/example-fraud-v1")
    insights = examples.get(f"/v1/evaluations/{model['evaluation_id']}").json()["insights"]
    assert insights["base_rate"] < 0.02  # fraud is rare: accuracy alone would mislead
    at_half = next(r for r in insights["thresholds"] if abs(r["threshold"] - 0.5) < 1e-9)
    threshold = choose_threshold(insights["thresholds"], min_precision=0.5)
    assert threshold is not None
    chosen = next(r for r in insights["thresholds"] if abs(r["threshold"] - threshold) < 1e-9)
    # The lowest threshold that keeps precision at 0.5 or more: every alert at least as likely fraud as not,
    # and as much of the fraud caught as that allows.
    assert chosen["precision"] >= 0.5 and chosen["recall"] >= at_half["recall"]
    assert all(
        r["precision"] is None or r["precision"] < 0.5
        for r in insights["thresholds"]
        if r["threshold"] < threshold - 1e-9
    )
    examples.patch("/v1/models/fraud", json={"score_threshold": threshold}).raise_for_status()
    suspicious = {
        "amount": 1900,
        "merchant_category": "electronics",
        "hour": 3,
        "card_present": 0,
        "country_mismatch": 1,
        "device_mismatch": 1,
        "txn_count_1h": 6,
        "amount_vs_avg_ratio": 9,
    }
    [p] = examples.post("/v1/models/fraud/predict", json={"record": suspicious}).json()["predictions"]
    expected = "1" if p["predicted_scores"]["1"] >= threshold else "0"
    assert p["predicted_label"] == expected
