"""The README quickstart, step by step: once through the SDK and once through the CLI, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlsvc.client import Client, NotFoundError, ResourceFailedError, ValidationError
from tests.scoring import assert_served_as_registered, implied_label, registered_pipeline
from tests.servers import REPO, RunningServer, run_cli

CHURN = str(REPO / "datasources" / "churn.csv")
RECORD = {
    "tenure_months": 2,
    "contract": "month-to-month",
    "internet_service": "fiber",
    "payment_method": "electronic check",
    "support_calls_90d": 5,
}


def test_quickstart_through_the_sdk(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    with Client(mlsvc_server.url) as client:
        ds = client.datasources.create(CHURN, name="churn-sdk")
        assert ds.status == "PENDING"
        seen: list[str] = []
        ds = client.datasources.wait(ds.id, timeout=120, on_progress=lambda r: seen.append(r.status))
        assert ds.status == "COMPLETED" and ds.row_count == 5000 and ds.data_schema is not None
        assert "PENDING" in seen or "INPROGRESS" in seen
        model = client.models.create("churn-sdk", ds.id, time_budget_s=4)
        model = client.models.wait(model.id, timeout=180)
        assert model.version == 1 and model.aliases == ["production"]
        answer = client.predict("churn-sdk", RECORD)
        assert answer.version == 1 and answer.model_id == model.id
        described = model.model_dump(mode="json")
        served = [p.model_dump(mode="json") for p in answer.predictions]
        assert_served_as_registered(registered_pipeline(mlsvc_server, described), described, [RECORD], served)
        listed = [m.id for m in client.models.iter(name="churn-sdk")]
        assert listed == [model.id]
        importances = [i["importance"] for i in model.importances]
        assert importances == sorted(importances, reverse=True)  # most important first, each feature once
        assert sorted(i["attribute"] for i in model.importances) == sorted(f.attributeName for f in model.features)
        holdout = client.evaluations.get(model.evaluation_id)
        assert holdout.holdout and holdout.value == model.metrics["BinaryAUC"]
        evaluation = client.evaluations.wait(client.evaluations.create("churn-sdk", ds.id).id, timeout=120)
        assert evaluation.rows == 5000 and evaluation.metric == "BinaryAUC"
        batch = client.batch_predictions.create("churn-sdk", str(tmp_path / "sdk-batch"), datasource_id=ds.id)
        batch = client.batch_predictions.wait(batch.id, timeout=120)
        assert batch.rows_scored == 5000 and batch.manifest_uri
        # A retried create with the same id gives back the same resource, not a second one.
        again = client.datasources.create(CHURN, name="churn-sdk", id=ds.id)
        assert again.id == ds.id and again.created_at == ds.created_at
        with pytest.raises(NotFoundError) as info:
            client.models.get("no-such-model")
        assert info.value.status_code == 404 and "no-such-model" in info.value.message
        with pytest.raises(ValidationError):
            client.predict("churn-sdk", records=[])
        bad = client.datasources.create(CHURN, target="no_such_column")
        with pytest.raises(ResourceFailedError) as failed:
            client.datasources.wait(bad.id, timeout=60)
        assert "no_such_column" in str(failed.value)


def test_quickstart_through_the_cli(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    created = run_cli(mlsvc_server, "datasources", "create", CHURN, "--name", "churn-cli", "--wait", "--json")
    assert created.returncode == 0, created.stderr
    ds = json.loads(created.stdout)
    assert ds["status"] == "COMPLETED" and ds["row_count"] == 5000
    table = run_cli(mlsvc_server, "datasources", "list")
    assert table.returncode == 0 and ds["id"] in table.stdout
    described = run_cli(mlsvc_server, "datasources", "describe", ds["id"])
    assert described.returncode == 0 and "tenure_months" in described.stdout and "NUMERIC" in described.stdout
    trained = run_cli(
        mlsvc_server,
        "models",
        "create",
        "churn-cli",
        "--datasource",
        ds["id"],
        "--time-budget",
        "4",
        "--wait",
        "--json",
    )
    assert trained.returncode == 0, trained.stderr
    model = json.loads(trained.stdout)
    assert model["status"] == "COMPLETED" and model["version"] == 1
    shown = run_cli(mlsvc_server, "models", "get", "churn-cli:1")
    assert shown.returncode == 0 and model["id"] in shown.stdout
    predicted = run_cli(mlsvc_server, "predict", "churn-cli", json.dumps(RECORD), "--json")
    assert predicted.returncode == 0, predicted.stderr
    [p] = json.loads(predicted.stdout)["predictions"]
    assert p["predicted_label"] == implied_label(model, p["predicted_scores"])
    over_rest = httpx.post(f"{mlsvc_server.url}/v1/models/churn-cli/predict", json={"record": RECORD}).json()
    assert over_rest["predictions"] == [p]  # the CLI shows the server's answer as it is
    human = run_cli(mlsvc_server, "predict", "churn-cli", json.dumps(RECORD))
    assert human.returncode == 0 and "v1" in human.stdout
    aliased = run_cli(mlsvc_server, "models", "alias", "churn-cli", "staging", "1", "--json")
    assert aliased.returncode == 0 and "staging" in json.loads(aliased.stdout)["aliases"]
    models = run_cli(mlsvc_server, "models", "list", "--name", "churn-cli", "--json")
    assert [m["id"] for m in json.loads(models.stdout)] == [model["id"]]
    described = run_cli(mlsvc_server, "models", "describe", "churn-cli")
    assert described.returncode == 0, described.stderr
    for words in ("leaderboard", "★", "ROC curve", "TPR", "permutation importance", "at these thresholds"):
        assert words in described.stdout, words
    evaluation = run_cli(mlsvc_server, "evaluations", "get", model["evaluation_id"])
    assert evaluation.returncode == 0 and "AUC" in evaluation.stdout
    out = tmp_path / "cli-batch"  # outputs go outside MLSVC_HOME, which holds only mlsvc's own files
    batch = run_cli(
        mlsvc_server, "batch", "create", "churn-cli", str(out), "--datasource", ds["id"], "--wait", "--json"
    )
    assert batch.returncode == 0, batch.stderr
    assert json.loads(batch.stdout)["rows_scored"] == 5000
    listed = run_cli(mlsvc_server, "batch", "list")
    assert listed.returncode == 0 and json.loads(batch.stdout)["id"] in listed.stdout
    shown = run_cli(mlsvc_server, "batch", "get", json.loads(batch.stdout)["id"])
    assert shown.returncode == 0 and "manifest" in shown.stdout
    evaluations = run_cli(mlsvc_server, "evaluations", "list", "--model-id", model["id"], "--json")
    assert [e["id"] for e in json.loads(evaluations.stdout)] == [model["evaluation_id"]]
    threshold = run_cli(
        mlsvc_server, "models", "update", "churn-cli:1", "--threshold", "0.3", "--tag", "team=a", "--json"
    )
    assert threshold.returncode == 0, threshold.stderr
    assert json.loads(threshold.stdout)["score_threshold"] == 0.3 and json.loads(threshold.stdout)["tags"] == {
        "team": "a"
    }
    renamed = run_cli(mlsvc_server, "datasources", "update", ds["id"], "--name", "churn-renamed", "--json")
    assert json.loads(renamed.stdout)["name"] == "churn-renamed"
    out_of_range = run_cli(mlsvc_server, "models", "update", "churn-cli:1", "--threshold", "2")
    assert out_of_range.returncode == 2 and "validation_error" in out_of_range.stderr
    deleted = run_cli(mlsvc_server, "models", "delete", "churn-cli:1", "--force", "--json")
    assert json.loads(deleted.stdout)["status"] == "DELETED"
    gone = run_cli(mlsvc_server, "datasources", "delete", ds["id"], "--json")
    assert json.loads(gone.stdout)["status"] == "DELETED"


def test_cli_errors_are_one_line_with_meaningful_exit_codes(mlsvc_server: RunningServer) -> None:
    missing = run_cli(mlsvc_server, "models", "get", "no-such-model")
    assert missing.returncode == 3 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad_json = run_cli(mlsvc_server, "predict", "x", "{not json")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    refused = run_cli(mlsvc_server, "datasources", "create", "ftp://host/x.csv")
    assert refused.returncode == 2 and "unsupported_uri" in refused.stderr
    failed = run_cli(mlsvc_server, "datasources", "create", CHURN, "--target", "nope", "--wait")
    assert failed.returncode == 4 and "nope" in failed.stderr
    offline = subprocess.run(
        [sys.executable, "-m", "mlsvc.cli", "datasources", "list", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 6 and "cannot reach" in offline.stderr
