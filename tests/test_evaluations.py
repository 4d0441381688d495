"""Evaluations over real HTTP: the holdout evaluation made at training, evaluations on other datasources for
each model type (agreeing with the batch scores of the same rows), and bad requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.metrics import roc_auc_score

from mlsvc.client import choose_threshold
from tests.datasets import IRIS_CLASSES, iris_csv
from tests.rest import completed, error
from tests.scoring import assert_served_as_registered, registered_pipeline
from tests.servers import REPO, RunningServer, wait_done

CHURN = str(REPO / "datasources" / "churn.csv")


def _datasource(api: httpx.Client, **body: Any) -> dict[str, Any]:
    return completed(api, "/v1/datasources", body)


def _model(api: httpx.Client, **body: Any) -> dict[str, Any]:
    return completed(api, "/v1/models", {"time_budget_s": 3, **body})


@pytest.fixture(scope="module")
def churn_split(api: httpx.Client) -> dict[str, Any]:
    """Amazon ML's pattern: train on a random 70 % and evaluate on the other 30 % of one file."""
    split = {"strategy": "random", "randomSeed": "eval", "percentBegin": 0, "percentEnd": 70}
    train = _datasource(api, data_uri=CHURN, rearrangement={"splitting": split})
    test = _datasource(api, data_uri=CHURN, rearrangement={"splitting": {**split, "complement": True}})
    model = _model(api, name="churn-eval", datasource_id=train["id"])
    created = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": test["id"]})
    assert created.status_code == 202, created.text
    evaluation = wait_done(api, f"/v1/evaluations/{created.json()['id']}")
    assert evaluation["status"] == "COMPLETED", evaluation["message"]
    return {"train": train, "test": test, "model": model, "evaluation": evaluation}


def test_training_makes_a_holdout_evaluation_with_binary_insights(
    api: httpx.Client, churn_split: dict[str, Any]
) -> None:
    model = churn_split["model"]
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["status"] == "COMPLETED" and ev["holdout"] is True and ev["model_id"] == model["id"]
    assert ev["rows"] == model["holdout_rows"] and ev["metric"] == "BinaryAUC"
    assert ev["value"] == pytest.approx(model["metrics"]["BinaryAUC"])
    assert ev["baseline"]["value"] == 0.5 and "0.50" in ev["vs_baseline"]
    insights = ev["insights"]
    assert len(insights["thresholds"]) == 101 and insights["roc_curve"] and insights["pr_curve"]
    assert sum(insights["score_histogram"]["positive"]) + sum(insights["score_histogram"]["negative"]) == ev["rows"]
    at = insights["at_threshold"]
    assert at["tp"] + at["fp"] + at["tn"] + at["fn"] == ev["rows"]


def test_evaluating_on_the_complement_split_agrees_with_its_batch_scores(
    api: httpx.Client, churn_split: dict[str, Any], tmp_path: Path
) -> None:
    test, ev = churn_split["test"], churn_split["evaluation"]
    assert test["used_row_count"] + churn_split["train"]["used_row_count"] == 5000
    assert ev["rows"] == test["used_row_count"] and ev["holdout"] is False and ev["model_version"] == 1
    listed = api.get("/v1/evaluations", params={"model_id": churn_split["model"]["id"]}).json()["items"]
    assert {e["id"] for e in listed} >= {ev["id"], churn_split["model"]["evaluation_id"]}
    # The same model scoring the same rows in a batch: their AUC against the file's labels is the evaluation's.
    batch = completed(
        api,
        "/v1/batch-predictions",
        {"model": "churn-eval", "datasource_id": test["id"], "output_uri": str(tmp_path)},
    )
    scores = pd.read_csv(batch["outputs"][0]["output"], dtype={"customer_id": str})
    labels = pd.read_csv(CHURN, dtype={"customer_id": str}).set_index("customer_id")["churned"]
    assert len(scores) == ev["rows"] and scores["customer_id"].is_unique
    truth = (labels.loc[scores["customer_id"]] == "yes").to_numpy()
    assert ev["value"] == pytest.approx(roc_auc_score(truth, scores["score"]), abs=1e-9)
    at = ev["insights"]["at_threshold"]
    assert at["tp"] + at["fn"] == int(truth.sum())


def test_an_evaluation_on_rows_the_model_was_trained_on_says_so(api: httpx.Client, churn_split: dict[str, Any]) -> None:
    # The complement of the training split shares no row with it: no note.
    assert churn_split["evaluation"]["training_overlap"] is None
    assert "trained" not in churn_split["evaluation"]["message"]
    model = churn_split["model"]
    learnt = model["training_rows"] / (model["training_rows"] + model["holdout_rows"])
    whole = _datasource(api, data_uri=CHURN)
    half = {"strategy": "random", "randomSeed": "eval", "percentBegin": 35, "percentEnd": 100}
    overlapping = _datasource(api, data_uri=CHURN, rearrangement={"splitting": half})
    # The training datasource itself; the whole file (70 % of it was the training datasource); a split that
    # shares half its range with the training split (35-70 of 35-100).
    for ds, shared in ((churn_split["train"], 1.0), (whole, 0.7), (overlapping, 35 / 65)):
        created = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": ds["id"]})
        assert created.status_code == 202, created.text
        assert created.json()["training_overlap"]["fraction_trained_on"] == pytest.approx(shared * learnt, abs=1e-4)
        ev = wait_done(api, f"/v1/evaluations/{created.json()['id']}")
        assert ev["status"] == "COMPLETED", ev["message"]
        overlap = ev["training_overlap"]
        assert overlap["datasource_id"] == churn_split["train"]["id"]
        assert f"about {shared * learnt:.0%} of these rows were used to train the model" in ev["message"]
        assert overlap["note"] in ev["message"]


@pytest.mark.slow
def test_the_churn_model_generalises_to_the_complement(churn_split: dict[str, Any]) -> None:
    holdout, ev = churn_split["model"]["metrics"]["BinaryAUC"], churn_split["evaluation"]
    assert holdout > 0.75 and 0.75 < ev["value"] < 0.95
    # A user picks a threshold for a target precision from the table, and predictions then use it.
    assert choose_threshold(ev["insights"]["thresholds"], min_precision=0.6) is not None


@pytest.fixture(scope="module")
def iris(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ds = _datasource(api, data_uri=str(iris_csv(tmp_path_factory.mktemp("iris"))), target="species")
    model = _model(api, name="iris", datasource_id=ds["id"])
    return {"model": model, "evaluation": api.get(f"/v1/evaluations/{model['evaluation_id']}").json()}


@pytest.fixture(scope="module")
def diabetes(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    frame = load_diabetes(as_frame=True).frame.rename(columns={"s1": "cholesterol", "bmi": "body_mass_index"})
    path = tmp_path_factory.mktemp("diabetes") / "diabetes.csv"
    frame.to_csv(path, index=False)
    ds = _datasource(api, data_uri=str(path), target="target")
    model = _model(api, name="diabetes", datasource_id=ds["id"])
    return {"model": model, "evaluation": api.get(f"/v1/evaluations/{model['evaluation_id']}").json()}


def test_multiclass_evaluation_and_predictions(api: httpx.Client, iris: dict[str, Any], server: RunningServer) -> None:
    model, ev = iris["model"], iris["evaluation"]
    assert model["model_type"] == "MULTICLASS" and model["classes"] == IRIS_CLASSES
    assert ev["metric"] == "MulticlassAvgFScore" and len(ev["insights"]["confusion_matrix"]["matrix"]) == 3
    assert sum(map(sum, ev["insights"]["confusion_matrix"]["matrix"])) == ev["rows"] == model["holdout_rows"]
    records = [{"petal_length": 1.4, "petal_width": 0.2}, {"sepal_length": 6.5, "petal_length": 5.5}, {}]
    predictions = api.post("/v1/models/iris/predict", json={"records": records}).json()["predictions"]
    assert_served_as_registered(registered_pipeline(server, model), model, records, predictions)


def test_regression_evaluation_and_predictions(
    api: httpx.Client, diabetes: dict[str, Any], server: RunningServer
) -> None:
    model, ev = diabetes["model"], diabetes["evaluation"]
    assert model["model_type"] == "REGRESSION" and model["score_threshold"] is None
    assert ev["metric"] == "RegressionRMSE" and sum(ev["insights"]["residual_histogram"]["counts"]) == ev["rows"]
    records = [{"body_mass_index": 0.05}, {"age": -0.02, "bp": 0.03, "cholesterol": 0.01}, {}]
    predictions = api.post("/v1/models/diabetes/predict", json={"records": records}).json()["predictions"]
    assert_served_as_registered(registered_pipeline(server, model), model, records, predictions)


@pytest.mark.slow
def test_multiclass_and_regression_models_beat_their_baselines(iris: dict[str, Any], diabetes: dict[str, Any]) -> None:
    assert iris["evaluation"]["value"] > 0.85 and iris["evaluation"]["baseline"]["value"] < 0.4
    assert diabetes["evaluation"]["value"] < diabetes["evaluation"]["baseline"]["value"]


def test_bad_evaluation_requests(api: httpx.Client, churn_split: dict[str, Any], tmp_path: Path) -> None:
    error(api.post("/v1/evaluations", json={"model": "no-such-model", "datasource_id": "x"}), 404, "not_found")
    error(api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": "no-such-ds"}), 404, "not_found")
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(CHURN).drop(columns=["churned"]).head(200).to_csv(unlabelled, index=False)
    ds = _datasource(api, data_uri=str(unlabelled))
    created = api.post("/v1/evaluations", json={"model": "churn-eval", "datasource_id": ds["id"]}).json()
    ev = wait_done(api, f"/v1/evaluations/{created['id']}")
    assert ev["status"] == "FAILED" and "no column 'churned'" in ev["message"]
