"""mlsvc's models as MLflow's users find them, in the real MLflow store the server wrote: each version stands on its
own (`mlflow.pyfunc.load_model` and `mlflow models serve` score raw CSV rows and JSON records and answer what the
REST API answers), and its run and version tell what mlsvc tells (metrics, parameters, figures, documents, tags,
description)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.datasets import IRIS_CLASSES, churn_records, iris_csv
from tests.rest import completed
from tests.servers import CHURN, RunningServer, free_port

BUDGET_S = 2
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Any]:
    """MLflow's client on the server's store, and MLflow's global URIs pointed at it for `models:/` URIs."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(server.mlflow_uri)
    mlflow.set_registry_uri(server.mlflow_uri)
    yield mlflow.MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


@pytest.fixture(scope="module")
def churn(api: httpx.Client) -> dict[str, Any]:
    ds = completed(api, "/v1/datasources", {"data_uri": str(CHURN)})
    return completed(api, "/v1/models", {"name": "mlflow-churn", "datasource_id": ds["id"], "time_budget_s": BUDGET_S})


@pytest.fixture(scope="module")
def held_back(api: httpx.Client, churn: dict[str, Any]) -> dict[str, Any]:
    """A second version of the churn model, trained with promotion turned off."""
    body = {"name": "mlflow-churn", "datasource_id": churn["datasource_id"], "time_budget_s": 1, "promote": "never"}
    return completed(api, "/v1/models", body)


@pytest.fixture(scope="module")
def iris_ds(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = iris_csv(tmp_path_factory.mktemp("mlflow-iris"))
    return completed(api, "/v1/datasources", {"data_uri": str(path), "target": "species"})


@pytest.fixture(scope="module")
def iris(api: httpx.Client, iris_ds: dict[str, Any]) -> dict[str, Any]:
    return completed(api, "/v1/models", {"name": "mlflow-iris", "datasource_id": iris_ds["id"], "time_budget_s": 1})


@pytest.fixture(scope="module")
def petals(api: httpx.Client, iris_ds: dict[str, Any]) -> dict[str, Any]:
    """A REGRESSION model: the petal width from the other measures (and the species)."""
    body = {"name": "mlflow-petals", "datasource_id": iris_ds["id"], "target": "petal_width", "time_budget_s": 1}
    return completed(api, "/v1/models", body)


@pytest.fixture(scope="module")
def shop(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 80, 2000)],
            "item_id": [f"i{i}" for i in rng.zipf(1.5, 2000) % 90],
            "timestamp": np.arange(2000),
        }
    )
    path = tmp_path_factory.mktemp("mlflow-shop") / "interactions.csv"
    interactions.to_csv(path, index=False)
    ds = completed(api, "/v1/datasources", {"data_uri": str(path)})
    body = {"name": "mlflow-shop", "datasource_id": ds["id"], "model_type": "RECOMMENDATION", "time_budget_s": 2}
    return completed(api, "/v1/models", body)


def _annotated(client: Any, model: Mapping[str, Any], timeout: float = 30) -> Any:
    """The model's MLflow version once the job's follow-up has tagged it (it runs right after the result is
    recorded, so a test can see the model COMPLETED a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        version = client.get_model_version(model["name"], str(model["version"]))
        if version.tags.get("mlsvc.status") == "COMPLETED" or time.monotonic() > deadline:
            return version
        time.sleep(0.2)


def _rest(api: httpx.Client, model: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    response = api.post(f"/v1/models/{model['name']}:{model['version']}/predict", json={"records": list(records)})
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as JSON records, as a user's program sends them (NaN as null)."""
    return list(json.loads(frame.to_json(orient="records")))


def _assert_same(mlflow_answers: Sequence[Mapping[str, Any]], api_answers: Sequence[Mapping[str, Any]]) -> None:
    """The same answers, row by row: labels and warnings equal, scores and values to 1e-9."""
    assert len(mlflow_answers) == len(api_answers)
    for ours, theirs in zip(mlflow_answers, api_answers, strict=True):
        assert list(ours["warnings"]) == theirs["warnings"]
        if "predicted_value" in theirs:
            assert ours["predicted_value"] == pytest.approx(theirs["predicted_value"], abs=1e-9)
            continue
        assert ours["predicted_label"] == theirs["predicted_label"]
        assert set(ours["predicted_scores"]) == set(theirs["predicted_scores"])
        for label, score in theirs["predicted_scores"].items():
            assert ours["predicted_scores"][label] == pytest.approx(score, abs=1e-9)


def _features(model: Mapping[str, Any]) -> list[str]:
    return [f["attributeName"] for f in model["features"]]


# --- the run and the version tell what mlsvc tells


def test_the_run_holds_metrics_parameters_figures_and_documents(
    churn: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    run = client.get_run(churn["mlflow_run_id"])
    assert run.data.metrics["BinaryAUC"] == pytest.approx(churn["metrics"]["BinaryAUC"])
    assert run.data.metrics["baseline_BinaryAUC"] == 0.5 and "average_precision" in run.data.metrics
    selected = next(row for row in churn["leaderboard"] if row["selected"])
    params = run.data.params
    assert params["selected"] == selected["candidate"] and params["selected.family"] == selected["family"]
    assert all(params[f"selected.{k}"] == str(v)[:500] for k, v in selected["params"].items())
    assert (params["time_budget_s"], params["seed"], params["target"]) == (str(float(BUDGET_S)), "0", "churned")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"leaderboard.json", "evaluation.json", "schema.json", "recipe.json", "importances.json"} <= names
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    expected = {"roc_curve.png", "pr_curve.png", "confusion_matrix.png", "score_histogram.png"}
    assert figures == {f"figures/{name}" for name in expected}
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path)))
    for name in expected:
        image = (local / "figures" / name).read_bytes()
        assert image.startswith(PNG) and len(image) > 5000, name  # a drawn figure, not an empty canvas
    assert json.loads((local / "recipe.json").read_text()) == churn["recipe"]
    assert json.loads((local / "importances.json").read_text()) == churn["importances"]
    schema = json.loads((local / "schema.json").read_text())
    assert schema["features"] == churn["features"] and schema["classes"] == ["no", "yes"]
    assert schema["target"] == "churned" and schema["model_type"] == "BINARY"
    evaluation = json.loads((local / "evaluation.json").read_text())
    assert evaluation["auc"] == pytest.approx(churn["metrics"]["BinaryAUC"])


def test_the_version_is_tagged_and_described_as_mlsvc_says(churn: dict[str, Any], client: Any) -> None:
    version = _annotated(client, churn)
    tags = version.tags
    assert tags["mlsvc.model_id"] == churn["id"] and tags["mlsvc.status"] == "COMPLETED"
    assert tags["mlsvc.metric"] == "BinaryAUC"
    assert float(tags["mlsvc.metric_value"]) == pytest.approx(churn["metrics"]["BinaryAUC"], abs=1e-6)
    assert tags["mlsvc.promoted"] == "true" and tags["mlsvc.promotion_reason"] == churn["promotion"]["reason"]
    assert tags["mlsvc.selected"] == churn["metrics"]["selected"]
    assert version.run_id == churn["mlflow_run_id"]
    text = version.description
    assert churn["id"] in text and "promoted to `production`" in text and churn["promotion"]["reason"] in text
    assert "vs 0.50" in text  # the holdout's comparison with the baseline, as the evaluation words it
    assert 'mlflow.pyfunc.load_model("models:/mlflow-churn/1")' in text
    assert client.get_run(churn["mlflow_run_id"]).data.tags["mlflow.note.content"] == text


def test_a_version_kept_from_production_says_so(held_back: dict[str, Any], client: Any) -> None:
    version = _annotated(client, held_back)
    assert held_back["promotion"] == {"promoted": False, "reason": "promote is 'never'"}
    assert version.tags["mlsvc.promoted"] == "false" and version.tags["mlsvc.promotion_reason"] == "promote is 'never'"
    assert "**Promotion:** not promoted: promote is 'never'." in version.description
    assert int(client.get_model_version_by_alias("mlflow-churn", "production").version) == 1


def test_a_multiclass_run_has_its_confusion_matrix(iris: dict[str, Any], client: Any) -> None:
    names = {a.path for a in client.list_artifacts(iris["mlflow_run_id"], "figures")}
    assert names == {"figures/confusion_matrix.png"}
    assert _annotated(client, iris).tags["mlsvc.metric"] == "MulticlassAvgFScore"


def test_a_regression_run_has_its_residuals(petals: dict[str, Any], client: Any) -> None:
    names = {a.path for a in client.list_artifacts(petals["mlflow_run_id"], "figures")}
    assert names == {"figures/residual_histogram.png"}
    tags = _annotated(client, petals).tags
    assert tags["mlsvc.metric"] == "RegressionRMSE"
    assert float(tags["mlsvc.metric_value"]) == pytest.approx(petals["metrics"]["RegressionRMSE"], rel=1e-5)


# --- each version stands on its own


def test_a_version_is_a_pyfunc_of_code_and_skops_with_no_pickle(churn: dict[str, Any], client: Any) -> None:
    from mlflow.models import Model

    files = {a.path for a in client.list_artifacts(churn["mlflow_run_id"], "model")}
    assert {"model/MLmodel", "model/model.skops", "model/mlsvc_model.json", "model/mlsvc_pyfunc.py"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]
    flavors = Model.load(f"models:/mlflow-churn/{churn['version']}").flavors
    assert flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert flavors["sklearn"]["serialization_format"] == "skops"


def test_the_pyfunc_scores_the_csv_as_pandas_reads_it_as_the_api_scores_its_rows(
    churn: dict[str, Any], api: httpx.Client, client: Any, tmp_path: Path
) -> None:
    import mlflow

    lines = CHURN.read_text().splitlines()[:201]
    cells = lines[150].split(",")
    cells[1] = "abc"  # a NUMERIC cell that is not a number: pandas reads tenure_months as text
    lines[150] = ",".join(cells)
    csv = tmp_path / "churn-200.csv"
    csv.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(csv)
    # What pandas makes of the CSV: zero-padded codes ("02139") as numbers, flags 0/1 as integers.
    assert frame["region"].dtype == np.int64 and 2139 in set(frame["region"])
    assert frame["senior_citizen"].dtype == np.int64 and frame["monthly_charges"].dtype == np.float64
    assert frame["tenure_months"].iloc[149] == "abc"
    model = mlflow.pyfunc.load_model("models:/mlflow-churn@production")
    answers = model.predict(frame)
    assert list(answers.index) == list(frame.index)
    assert set(answers["predicted_label"]) == {"no", "yes"}
    assert any("'abc'" in w for w in answers["warnings"][149])  # said, not refused
    # The API given the same rows as the CSV writes them (the row id and the target left out: the API warns of
    # columns a model does not use, which MLflow drops before the model sees them).
    as_written = pd.read_csv(csv, dtype=str, keep_default_na=False).drop(columns=["customer_id", "churned"])
    rows = [{k: v for k, v in row.items() if v != ""} for row in as_written.to_dict(orient="records")]
    _assert_same(answers.to_dict(orient="records"), _rest(api, churn, rows))


def test_the_pyfunc_scores_json_records_as_the_api_does(churn: dict[str, Any], api: httpx.Client, client: Any) -> None:
    import mlflow

    records = churn_records(30)  # every value as text, as the CSV has it: "02139" keeps its zero
    records += [
        {"tenure_months": "abc", "contract": "month-to-month", "region": "02139", "phone_service": "yes"},
        {"tenure_months": 3, "monthly_charges": None, "senior_citizen": True, "contract": "five-year"},
        {},
    ]
    model = mlflow.pyfunc.load_model("models:/mlflow-churn@production")
    expected = _rest(api, churn, records)
    _assert_same(model.predict(records).to_dict(orient="records"), expected)
    # A program that sends the codes as numbers, as pandas read them, gets the answers of the codes as written.
    numbers = [{**r, "region": int(r["region"])} if "region" in r else r for r in records]
    assert numbers[0]["region"] != records[0]["region"]
    _assert_same(model.predict(numbers).to_dict(orient="records"), expected)
    threshold = 0.9
    strict = model.predict(records, params={"score_threshold": threshold}).to_dict(orient="records")
    assert [a["predicted_label"] for a in strict] == [
        "yes" if a["predicted_scores"]["yes"] >= threshold else "no" for a in strict
    ]
    assert sum(a["predicted_label"] == "yes" for a in strict) < sum(e["predicted_label"] == "yes" for e in expected)


def test_a_multiclass_pyfunc_answers_class_labels(iris: dict[str, Any], api: httpx.Client, client: Any) -> None:
    import mlflow

    records = [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6, "sepal_width": 2.2, "petal_length": 5, "petal_width": 1.5},
        {"sepal_length": "7.7", "petal_length": 6.7},
    ]
    answers = mlflow.pyfunc.load_model("models:/mlflow-iris/1").predict(pd.DataFrame(records))
    assert set(answers["predicted_label"]) <= set(IRIS_CLASSES)
    _assert_same(answers.to_dict(orient="records"), _rest(api, iris, records))


def test_a_regression_pyfunc_answers_values(petals: dict[str, Any], api: httpx.Client, client: Any) -> None:
    import mlflow

    records = [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "species": "setosa"},
        {"sepal_length": 6, "sepal_width": "2.2", "petal_length": 5, "species": "virginica"},
        {"petal_length": "long"},
    ]
    answers = mlflow.pyfunc.load_model("models:/mlflow-petals/1").predict(pd.DataFrame(records))
    assert list(answers.columns) == ["predicted_value", "warnings"]
    _assert_same(answers.to_dict(orient="records"), _rest(api, petals, records))


def test_a_recommender_pyfunc_answers_as_the_api_does(shop: dict[str, Any], api: httpx.Client, client: Any) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/mlflow-shop/{shop['version']}")
    users = ["u1", "u7", "nobody"]
    answers = model.predict(pd.DataFrame({"user_id": users}), params={"k": 5}).to_dict(orient="records")
    for user, answer in zip(users, answers, strict=True):
        expected = api.post("/v1/models/mlflow-shop/predict", json={"user_id": user, "k": 5}).json()
        assert answer["user_id"] == user and answer["cold_start"] == expected["cold_start"]
        assert answer["recommendations"] == expected["recommendations"] and len(answer["recommendations"]) == 5
    assert answers[2]["cold_start"] is True
    figures = {a.path for a in client.list_artifacts(shop["mlflow_run_id"], "figures")}
    assert figures == {"figures/metrics_vs_baseline.png"}
    assert _annotated(client, shop).tags["mlsvc.metric"] == "NDCG@10"


@pytest.fixture(scope="module")
def served(churn: dict[str, Any], server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` of the churn version, from the server's registry, on a free port: its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.mlflow_uri,
        "MLFLOW_REGISTRY_URI": server.mlflow_uri,
        # MLflow starts `uvicorn` by name: the one of this environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/mlflow-churn/{churn['version']}"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"mlflow models serve exited:\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"mlflow models serve did not answer:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_mlflow_models_serve_answers_as_the_api_does(churn: dict[str, Any], api: httpx.Client, served: str) -> None:
    rows = churn_records(40, skip=300)  # lines 302-341 of the CSV, as written
    rows[3].pop("tenure_months")
    expected = _rest(api, churn, rows)
    frame = pd.read_csv(CHURN, skiprows=range(1, 301), nrows=40)[_features(churn)]
    assert frame["region"].dtype == np.int64
    frame["tenure_months"] = frame["tenure_months"].astype(float)
    frame.loc[3, "tenure_months"] = np.nan  # a gap: JSON sends a null
    as_written = pd.DataFrame(rows)
    bodies = [
        {"dataframe_split": json.loads(frame.to_json(orient="split"))},
        {"dataframe_records": _json_rows(frame)},
        {"dataframe_split": json.loads(as_written.to_json(orient="split"))},
    ]
    for body in bodies:
        response = httpx.post(f"{served}/invocations", json=body, timeout=60)
        assert response.status_code == 200, response.text
        _assert_same(response.json()["predictions"], expected)
    refused = httpx.post(f"{served}/invocations", json={"dataframe_records": "not rows"}, timeout=60)
    assert refused.status_code == 400
