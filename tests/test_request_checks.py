"""What can be checked when a request arrives is refused at once, with the fix in the message: a local path that
is not there, a model on a datasource that names no target, a column or model name that is nearly right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.rest import completed, error
from tests.servers import REPO, wait_done

CHURN = REPO / "datasources" / "churn.csv"


@pytest.fixture(scope="module")
def untargeted(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A COMPLETED datasource that names no target."""
    path = tmp_path_factory.mktemp("checks") / "churn-head.csv"
    pd.read_csv(CHURN, dtype=str).head(300).to_csv(path, index=False)
    return completed(api, "/v1/datasources", {"data_uri": str(path)})


def test_a_local_path_that_is_not_there_is_refused_at_once(api: httpx.Client, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "churn.csv"
    message = error(api.post("/v1/datasources", json={"data_uri": str(missing)}), 404, "data_not_found")
    assert f"no file or folder at {missing}" in message
    schema = error(
        api.post("/v1/datasources", json={"data_uri": str(CHURN), "schema_uri": str(missing)}), 404, "data_not_found"
    )
    assert str(missing) in schema
    batch = {"model": "churn", "data_uri": str(missing), "output_uri": str(tmp_path / "out")}
    assert str(missing) in error(api.post("/v1/batch-predictions", json=batch), 404, "data_not_found")


def test_a_model_on_a_datasource_without_a_target_is_refused_at_once(
    api: httpx.Client, untargeted: dict[str, Any]
) -> None:
    assert untargeted["schema"].get("targetAttributeName") is None
    response = api.post("/v1/models", json={"name": "no-target", "datasource_id": untargeted["id"]})
    message = error(response, 422, "validation_error")
    assert f"datasource '{untargeted['id']}' names no target: give 'target'" in message and "'churned'" in message
    assert api.get("/v1/models/no-target").status_code == 404  # nothing was queued


def test_a_nearly_right_name_gets_a_suggestion(api: httpx.Client, untargeted: dict[str, Any]) -> None:
    body = {"name": "typo", "datasource_id": untargeted["id"], "target": "churnd"}
    assert "(did you mean 'churned'?)" in error(api.post("/v1/models", json=body), 422, "validation_error")
    cased = {**body, "target": "Churned"}
    assert "(did you mean 'churned'?)" in error(api.post("/v1/models", json=cased), 422, "validation_error")
    # Naming the target of a datasource whose schema is to be inferred: its job reads the header, and says.
    ds = api.post("/v1/datasources", json={"data_uri": str(CHURN), "target": "churn"}).json()
    failed = wait_done(api, f"/v1/datasources/{ds['id']}")
    assert failed["status"] == "FAILED" and "(did you mean 'churned'?)" in failed["message"], failed["message"]


def test_an_unknown_model_lists_the_known_ones(api: httpx.Client, untargeted: dict[str, Any]) -> None:
    completed(
        api,
        "/v1/models",
        {"name": "checks-churn", "datasource_id": untargeted["id"], "target": "churned", "time_budget_s": 1},
    )
    message = error(api.post("/v1/models/checks-chrn/predict", json={"record": {}}), 404, "not_found")
    assert "(did you mean 'checks-churn'?)" in message and "known models: " in message
    versions = error(api.get("/v1/models/checks-churn:9"), 404, "not_found")
    assert "'checks-churn' has versions 1 and aliases {'production': 1}" in versions
