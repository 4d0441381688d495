"""Evaluations over real HTTP: the holdout evaluation made at training, evaluations on other datasources for
each model type, promotion by the holdout, and bad requests."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from mlsvc.training.evaluation import choose_threshold
from tests.servers import REPO, RunningServer, wait_done

CHURN = str(REPO / "datasources" / "churn.csv")


def _datasource(api: httpx.Client, **body: object) -> dict:
    created = api.post("/v1/datasources", json=body)
    assert created.status_code == 202, created.text
    done = wait_done(api, f"/v1/datasources/{created.json()['id']}")
    assert done["status"] == "COMPLETED", done["message"]
    return done


def _model(api: httpx.Client, **body: object) -> dict:
    created = api.post("/v1/models", json={"time_budget_s": 3, **body})
    assert created.status_code == 202, created.text
    return wait_done(api, f"/v1/models/{created.json()['id']}")


@pytest.fixture(scope="module")
def api(mlsvc_server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=mlsvc_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def churn_split(api: httpx.Client) -> dict:
    """Amazon ML's pattern: train on a random 70 % and evaluate on the other 30 % of one file."""
    split = {"strategy": "random", "randomSeed": "eval", "percentBegin": 0, "percentEnd": 70}
    train = _datasource(api, data_uri=CHURN, rearrangement={"splitting": split})
    test = _datasource(api, data_uri=CHURN, rearrangement={"splitting": {**split, "complement": True}})
    model = _model(api, name="churn-eval", datasource_id=train["id"])
    assert model["status"] == "COMPLETED", model["message"]
    return {"train": train, "test": test, "model": model}


def test_training_makes_a_holdout_evaluation_with_binary_insights(api: httpx.Client, churn_split: dict) -> None:
    model = churn_split["model"]
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["status"] == "COMPLETED" and ev["holdout"] is True and ev["model_id"] == model["id"]
    assert ev["rows"] == model["holdout_rows"] and ev["metric"] == "BinaryAUC"
    assert ev["value"] == pytest.approx(model["metrics"]["BinaryAUC"])
    assert ev["value"] > 0.75 and ev["baseline"]["value"] == 0.5 and "0.50" in ev["vs_baseline"]
    insights = ev["insights"]
    assert len(insights["thresholds"]) == 101 and insights["roc_curve"] and insights["pr_curve"]
    assert sum(insights["score_histogram"]["positive"]) + sum(insights["score_histogram"]["negative"]) == ev["rows"]
    at = insights["at_threshold"]
    assert at["tp"] + at["fp"] + at["tn"] + at["fn"] == ev["rows"]


def test_evaluating_on_the_complement_split(api: httpx.Client, churn_split: dict) -> None:
    test = churn_split["test"]
    assert test["used_row_count"] + churn_split["train"]["used_row_count"] == 5000
    created = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": test["id"]})
    assert created.status_code == 202
    ev = wait_done(api, f"/v1/evaluations/{created.json()['id']}")
    assert ev["status"] == "COMPLETED", ev["message"]
    assert ev["rows"] == test["used_row_count"] and ev["holdout"] is False and ev["model_version"] == 1
    assert 0.75 < ev["value"] < 0.95
    # A user picks a threshold for a target precision from the table, and predictions then use it.
    threshold = choose_threshold(ev["insights"]["thresholds"], min_precision=0.6)
    assert threshold is not None
    listed = api.get("/v1/evaluations", params={"model_id": churn_split["model"]["id"]}).json()["items"]
    assert {e["id"] for e in listed} >= {ev["id"], churn_split["model"]["evaluation_id"]}


def test_multiclass_and_regression_evaluations(api: httpx.Client, tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    frame = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = np.array(iris.target_names)[iris.target]
    frame.to_csv(tmp_path / "iris.csv", index=False)
    ds = _datasource(api, data_uri=str(tmp_path / "iris.csv"), target="species")
    model = _model(api, name="iris", datasource_id=ds["id"])
    assert model["model_type"] == "MULTICLASS" and model["classes"] == ["setosa", "versicolor", "virginica"]
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["metric"] == "MulticlassAvgFScore" and ev["value"] > 0.85
    assert ev["baseline"]["value"] < 0.4 and len(ev["insights"]["confusion_matrix"]["matrix"]) == 3
    [p] = api.post("/v1/models/iris/predict", json={"record": {"petal_length": 1.4, "petal_width": 0.2}}).json()[
        "predictions"
    ]
    assert set(p["predicted_scores"]) == {"setosa", "versicolor", "virginica"}

    diabetes = load_diabetes(as_frame=True)
    frame = diabetes.frame.rename(columns={"s1": "cholesterol", "bmi": "body_mass_index"})
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    ds = _datasource(api, data_uri=str(tmp_path / "diabetes.csv"), target="target")
    model = _model(api, name="diabetes", datasource_id=ds["id"])
    assert model["model_type"] == "REGRESSION" and model["score_threshold"] is None
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["metric"] == "RegressionRMSE" and ev["value"] < ev["baseline"]["value"]
    assert sum(ev["insights"]["residual_histogram"]["counts"]) == ev["rows"]
    [p] = api.post("/v1/models/diabetes/predict", json={"record": {"body_mass_index": 0.05}}).json()["predictions"]
    assert isinstance(p["predicted_value"], float)


def test_promotion_by_the_same_holdout(api: httpx.Client, churn_split: dict) -> None:
    first = churn_split["model"]
    assert first["promotion"]["promoted"] is True and first["aliases"] == ["production"]
    second = _model(api, name="churn-eval", datasource_id=churn_split["train"]["id"], seed=5)
    promotion = second["promotion"]
    assert "on the same held-out rows" in promotion["reason"]
    production = api.get("/v1/models/churn-eval:production").json()
    assert production["version"] == (2 if promotion["promoted"] else 1)
    never = _model(api, name="churn-eval", datasource_id=churn_split["train"]["id"], promote="never")
    assert never["promotion"] == {"promoted": False, "reason": "promote is 'never'"}
    assert never["aliases"] == []


def test_bad_evaluation_requests(api: httpx.Client, churn_split: dict, tmp_path: Path) -> None:
    response = api.post("/v1/evaluations", json={"model": "no-such-model", "datasource_id": "x"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": "no-such-ds"})
    assert response.status_code == 404
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(CHURN).drop(columns=["churned"]).head(200).to_csv(unlabelled, index=False)
    ds = _datasource(api, data_uri=str(unlabelled))
    created = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": ds["id"]}).json()
    ev = wait_done(api, f"/v1/evaluations/{created['id']}")
    assert ev["status"] == "FAILED" and "no column 'churned'" in ev["message"]
