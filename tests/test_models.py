"""Training through the whole path over HTTP: versions, references, aliases, predictions equal to the registered
pipeline's, threshold, the time budget, delete."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.datasets import LOYAL, RISKY, churn_records
from tests.rest import completed, error
from tests.scoring import assert_served_as_registered, registered_pipeline
from tests.servers import REPO, RunningServer, wait_done

CHURN = str(REPO / "datasources" / "churn.csv")
BUDGET_S = 3


@pytest.fixture(scope="module")
def trained(api: httpx.Client) -> dict[str, Any]:
    """Two versions of the model 'churn-api' on the churn example."""
    ds = completed(api, "/v1/datasources", {"data_uri": CHURN})
    v1 = completed(api, "/v1/models", {"name": "churn-api", "datasource_id": ds["id"], "time_budget_s": BUDGET_S})
    v2 = completed(
        api, "/v1/models", {"name": "churn-api", "datasource_id": ds["id"], "seed": 7, "time_budget_s": BUDGET_S}
    )
    return {"ds": ds, "v1": v1, "v2": v2}


def test_training_twice_makes_versions_1_and_2(trained: dict[str, Any]) -> None:
    v1, v2 = trained["v1"], trained["v2"]
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["model_type"] == "BINARY" and v1["classes"] == ["no", "yes"] and v1["positive_label"] == "yes"
    assert v1["score_threshold"] == 0.5 and v1["target"] == "churned"
    assert v1["training_rows"] + v1["holdout_rows"] == 5000 and v1["holdout_rows"] == 1000
    board = v1["leaderboard"]
    assert [row["selected"] for row in board].count(True) == 1
    finalists = [row for row in board if row["status"] == "finalist"]
    assert finalists[0]["selected"] and finalists[0]["validation_score"] == v1["metrics"]["validation_score"]
    assert all(row["fit_time_s"] > 0 for row in board if row.get("validation_score") is not None)
    assert "customer_id" not in [f["attributeName"] for f in v1["features"]]  # the row id is not a feature
    assert v1["aliases"] == ["production"]  # the first version of a name is promoted


def test_training_keeps_its_time_budget(trained: dict[str, Any]) -> None:
    for model in (trained["v1"], trained["v2"]):
        assert model["time_budget_s"] == BUDGET_S
        # The budget bound the search (it left candidates out for it) ...
        skipped = [row for row in model["leaderboard"] if row["status"].startswith("skipped")]
        assert skipped and all("time budget" in row["status"] for row in skipped)
        # ... and the search, timed by itself, stayed within it, give or take one candidate's fit.
        assert 0 < model["metrics"]["search_s"] <= BUDGET_S * 1.5 + 2, model["metrics"]


@pytest.mark.slow
def test_the_holdout_auc_is_the_one_the_generator_documents(api: httpx.Client, trained: dict[str, Any]) -> None:
    v1 = trained["v1"]
    # The generator documents a holdout AUC near 0.84; a broken pipeline sits near 0.5.
    assert v1["metrics"]["BinaryAUC"] > 0.75
    assert len({row["family"] for row in v1["leaderboard"] if row.get("validation_score") is not None}) >= 3
    many = api.post("/v1/models/churn-api:2/predict", json={"records": [RISKY, LOYAL]}).json()["predictions"]
    assert [p["predicted_label"] for p in many] == ["yes", "no"]


def test_every_kind_of_reference_resolves(api: httpx.Client, trained: dict[str, Any]) -> None:
    v1, v2 = trained["v1"], trained["v2"]
    assert api.get(f"/v1/models/{v2['id']}").json()["version"] == 2
    assert api.get("/v1/models/churn-api:1").json()["id"] == v1["id"]
    assert api.get("/v1/models/churn-api:production").json()["id"] == v1["id"]
    assert api.get("/v1/models/churn-api").json()["id"] == v1["id"]  # production wins over newest
    assert api.get("/v1/models/churn-api:3").status_code == 404
    assert api.get("/v1/models/churn-api:staging").status_code == 404


def test_predictions_are_the_registered_pipelines(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer
) -> None:
    one = api.post("/v1/models/churn-api/predict", json={"record": RISKY}).json()
    assert one["model_id"] == trained["v1"]["id"] and one["version"] == 1
    [p] = one["predictions"]
    assert set(p["predicted_scores"]) == {"no", "yes"} and abs(sum(p["predicted_scores"].values()) - 1) < 1e-9
    records = [RISKY, LOYAL, {}, *churn_records(40)]
    for version in ("v1", "v2"):
        model = trained[version]
        answer = api.post(f"/v1/models/churn-api:{model['version']}/predict", json={"records": records}).json()
        assert answer["version"] == model["version"] and len(answer["predictions"]) == len(records)
        assert_served_as_registered(registered_pipeline(server, model), model, records, answer["predictions"])


def test_unknown_and_invalid_attributes_are_warnings_not_errors(api: httpx.Client, trained: dict[str, Any]) -> None:
    body = {"record": {"tenure_months": "soon", "favourite_colour": "red", "contract": ["x"]}}
    [p] = api.post("/v1/models/churn-api/predict", json=body).json()["predictions"]
    text = " ".join(p["warnings"])
    assert "favourite_colour" in text and "tenure_months" in text and "contract" in text
    # An invalid value is scored as missing and an unknown attribute is ignored: as if none had been sent.
    [empty] = api.post("/v1/models/churn-api/predict", json={"record": {}}).json()["predictions"]
    assert p["predicted_scores"] == empty["predicted_scores"] and p["predicted_label"] == empty["predicted_label"]
    assert empty["warnings"] == []


def test_a_categorical_value_training_never_saw_is_a_warning(api: httpx.Client, trained: dict[str, Any]) -> None:
    body = {"records": [{"contract": 5, "region": 2139}, {"contract": "two-year", "region": "23219"}]}
    unseen, seen = api.post("/v1/models/churn-api/predict", json=body).json()["predictions"]
    assert "attribute 'contract': '5' was never seen in training; scored as an unknown level" in unseen["warnings"]
    # 2139 is '02139' with its zero lost (a CSV read as numbers): not one of the codes the model knows.
    assert any("'region': '2139' was never seen" in w for w in unseen["warnings"]), unseen["warnings"]
    assert seen["warnings"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"record": {}, "records": []}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"records": [1, 2]}, 422, "validation_error"),
        ({"record": "tenure=3"}, 422, "validation_error"),
        ({"records": []}, 422, "validation_error"),
        ({"records": [{}] * 1001}, 413, "payload_too_large"),
    ],
)
def test_bad_prediction_requests(
    api: httpx.Client, trained: dict[str, Any], body: dict[str, Any], status: int, code: str
) -> None:
    error(api.post("/v1/models/churn-api/predict", json=body), status, code)


# Bodies predict's fast lane (mlsvc.server.models.PredictLane) answers itself or hands on to FastAPI.
LANE_BODIES = [
    b'{"record": {"tenure_months": 3, "contract": "one-year"}}',
    b'{"records": [{}, {"tenure_months": "soon", "contract": ["x"], "colour": "red"}]}',
    b'{"record": {"tenure_months": NaN, "monthly_charges": 1e400}}',
    b'{"record": {"tenure_months": 1}, "record": {"tenure_months": 40}}',
    b'{"record": {"contract": "\\ud800"}}',
    b'{"record": {}, "k": 5.0}',
    b'{"records": [' + b",".join([b"{}"] * 1001) + b"]}",
    b'\xef\xbb\xbf{"record": {}}',
    b'{"record": {}} x',
    b'{"record": {"contract": "\xff"}}',
    b'{"record": {}, "extra": 1}',
    b'{"records": []}',
    b"[]",
    b"",
]


@pytest.mark.parametrize("ref", ["churn-api", "no-such-model"])
@pytest.mark.parametrize("body", LANE_BODIES)
def test_the_fast_lane_answers_as_fastapi_does(
    api: httpx.Client, trained: dict[str, Any], ref: str, body: bytes
) -> None:
    # Sent as application/json a body may take the lane; with a charset it always goes through FastAPI's handler.
    path = f"/v1/models/{ref}/predict"
    lane = api.post(path, content=body, headers={"content-type": "application/json"})
    fastapi = api.post(path, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert (lane.status_code, lane.json()) == (fastapi.status_code, fastapi.json())


def test_threshold_patch_changes_labels(api: httpx.Client, trained: dict[str, Any]) -> None:
    record = {"record": {"tenure_months": 12, "contract": "one-year"}}
    ref = "churn-api:2"
    score = api.post(f"/v1/models/{ref}/predict", json=record).json()["predictions"][0]["predicted_scores"]["yes"]
    api.patch(f"/v1/models/{ref}", json={"score_threshold": min(1.0, score + 0.01)}).raise_for_status()
    assert api.post(f"/v1/models/{ref}/predict", json=record).json()["predictions"][0]["predicted_label"] == "no"
    api.patch(f"/v1/models/{ref}", json={"score_threshold": max(0.0, score - 0.01)}).raise_for_status()
    assert api.post(f"/v1/models/{ref}/predict", json=record).json()["predictions"][0]["predicted_label"] == "yes"
    assert api.patch(f"/v1/models/{ref}", json={"score_threshold": 1.5}).status_code == 422


def test_moving_an_alias_switches_predictions(api: httpx.Client, trained: dict[str, Any]) -> None:
    moved = api.put("/v1/models/churn-api/aliases/candidate", json={"version": 2})
    assert moved.status_code == 200 and "candidate" in moved.json()["aliases"]
    assert api.post("/v1/models/churn-api:candidate/predict", json={"record": {}}).json()["version"] == 2
    api.put("/v1/models/churn-api/aliases/candidate", json={"version": 1}).raise_for_status()
    assert api.post("/v1/models/churn-api:candidate/predict", json={"record": {}}).json()["version"] == 1
    assert api.put("/v1/models/churn-api/aliases/candidate", json={"version": 9}).status_code == 404
    assert api.put("/v1/models/churn-api/aliases/9lives", json={"version": 1}).status_code == 422
    removed = api.delete("/v1/models/churn-api/aliases/candidate")
    assert removed.status_code == 200 and "candidate" not in removed.json()["aliases"]
    assert api.post("/v1/models/churn-api:candidate/predict", json={"record": {}}).status_code == 404
    assert api.delete("/v1/models/churn-api/aliases/candidate").status_code == 404


def test_a_model_that_is_not_completed_answers_409(idle_api: httpx.Client, idle_churn: dict[str, Any]) -> None:
    # No worker runs on the idle server: the model stays PENDING for as long as the test needs.
    pending = idle_api.post("/v1/models", json={"name": "churn-pending", "datasource_id": idle_churn["id"]}).json()
    assert pending["status"] == "PENDING"
    response = idle_api.post(f"/v1/models/{pending['id']}/predict", json={"record": {}})
    assert "PENDING" in error(response, 409, "not_ready")
    assert response.json()["error"]["details"] == {"id": pending["id"], "status": "PENDING"}
    # Its name and its version find it while it waits, and say where it waits and what to do.
    assert pending["version"] == 1 and pending["message"].startswith("queued: ")
    for ref in ("churn-pending", "churn-pending:1"):
        got = idle_api.get(f"/v1/models/{ref}").json()
        assert (got["id"], got["status"], got["progress"]) == (pending["id"], "PENDING", 0.0)
        assert got["message"].startswith("queued: ") and "ahead" in got["message"], got["message"]
        message = error(idle_api.post(f"/v1/models/{ref}/predict", json={"record": {}}), 409, "not_ready")
        assert "PENDING (0%)" in message and "predict once it is COMPLETED" in message


def test_the_mlflow_registry_holds_the_versions(server: RunningServer, trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    # The registry URI too: another test in this process may have set MLflow's global registry to its own store.
    client = MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='churn-api'"))
    assert versions == [1, 2]
    assert int(client.get_model_version_by_alias("churn-api", "production").version) == 1
    run = client.get_run(trained["v1"]["mlflow_run_id"])
    assert run.data.metrics["BinaryAUC"] == pytest.approx(trained["v1"]["metrics"]["BinaryAUC"])


def test_delete_a_version(api: httpx.Client, server: RunningServer, trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    extra = api.post(
        "/v1/models", json={"name": "churn-del", "datasource_id": trained["ds"]["id"], "time_budget_s": 2}
    ).json()
    wait_done(api, f"/v1/models/{extra['id']}")
    # The first version became production: deleting it takes force, and the answer says the alias went with it.
    refused = error(api.delete("/v1/models/churn-del:1"), 409, "conflict")
    assert "production" in refused and "force=true" in refused
    assert api.get("/v1/models/churn-del:1").json()["status"] == "COMPLETED"
    deleted = api.delete("/v1/models/churn-del:1", params={"force": "true"}).json()
    assert deleted["status"] == "DELETED" and deleted["aliases"] == []
    assert deleted["message"] == "deleted with its alias(es) ['production']; 'churn-del' has no version left"
    assert api.get("/v1/models/churn-del").status_code == 404
    registry = MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    assert registry.get_model_version("churn-del", "1").tags["mlsvc.status"] == "DELETED"  # MLflow says so too
    response = api.post(f"/v1/models/{extra['id']}/predict", json={"record": {}})
    assert response.status_code == 409


def test_moving_production_under_load_fails_no_request(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer
) -> None:
    import threading

    versions: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/v1/models/churn-api:live/predict", json={"record": {"tenure_months": 5}})
                if response.status_code == 200:
                    versions.append(response.json()["version"])
                else:
                    failures.append(response.text)

    def answered_by(version: int) -> None:
        """Wait until the requests in flight are answered by ``version`` (a replica follows a move within a bound)."""
        start, deadline = len(versions), time.monotonic() + 30
        while version not in versions[start:]:
            assert time.monotonic() < deadline and not failures, f"v{version} never answered: {failures[:3]}"
            time.sleep(0.01)

    api.put("/v1/models/churn-api/aliases/live", json={"version": 1}).raise_for_status()
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        answered_by(1)
        for version in (2, 1, 2, 1, 2):
            api.put("/v1/models/churn-api/aliases/live", json={"version": version}).raise_for_status()
            answered_by(version)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert api.post("/v1/models/churn-api:live/predict", json={"record": {}}).json()["version"] == 2


def test_candidates_train_exactly_the_configurations_given(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer
) -> None:
    body = {
        "name": "churn-fixed",
        "datasource_id": trained["ds"]["id"],
        "time_budget_s": BUDGET_S,
        "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": 40, "early_stopping": False}}],
    }
    model = completed(api, "/v1/models", body)
    assert [row["candidate"] for row in model["leaderboard"]] == ["hist_gradient_boosting#0"]
    assert model["metrics"]["selected"] == "hist_gradient_boosting#0"
    assert model["leaderboard"][0]["params"]["max_iter"] == 40
    records = churn_records(40)
    answer = api.post(f"/v1/models/{model['id']}/predict", json={"records": records}).json()
    assert_served_as_registered(registered_pipeline(server, model), model, records, answer["predictions"])
    bad = {**body, "candidates": [{"family": "linear", "params": {"trees": 3}}]}
    message = error(api.post("/v1/models", json=bad), 422, "validation_error")
    assert "['trees']" in message and "takes ['C', 'alpha', 'class_weight', 'numeric', 'target']" in message
    unknown = {**body, "candidates": [{"family": "xgboost"}]}
    assert api.post("/v1/models", json=unknown).status_code == 422
    on_a_log = {**body, "model_type": "BINARY", "candidates": [{"family": "linear", "params": {"target": "log1p"}}]}
    assert "REGRESSION target" in error(api.post("/v1/models", json=on_a_log), 422, "validation_error")


def test_a_failed_version_keeps_its_number_and_mlflow_numbers_alike(
    api: httpx.Client, server: RunningServer, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    data = tmp_path / "churn-head.csv"
    data.write_text("\n".join(Path(CHURN).read_text().splitlines()[:400]) + "\n")
    ds = completed(api, "/v1/datasources", {"data_uri": str(data), "target": "churned"})
    data.rename(tmp_path / "moved.csv")  # the first training cannot read it, and fails before registering
    created = api.post("/v1/models", json={"name": "numbered", "datasource_id": ds["id"]}).json()
    first = wait_done(api, f"/v1/models/{created['id']}")
    assert first["status"] == "FAILED" and first["version"] == 1
    (tmp_path / "moved.csv").rename(data)
    second = completed(api, "/v1/models", {"name": "numbered", "datasource_id": ds["id"], "time_budget_s": 1})
    assert second["version"] == 2
    client = MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    [registered] = client.search_model_versions("name='numbered'")
    assert (int(registered.version), registered.tags["mlsvc.version"]) == (2, "2")
    assert int(client.get_model_version_by_alias("numbered", "production").version) == 2
