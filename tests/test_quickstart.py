"""The README quickstart, step by step: once through the SDK and once through the CLI, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlsvc.client import Client, NotFoundError, ResourceFailedError, ValidationError
from tests.servers import REPO, RunningServer

CHURN = str(REPO / "datasources" / "churn.csv")
RECORD = {
    "tenure_months": 2,
    "contract": "month-to-month",
    "internet_service": "fiber",
    "payment_method": "electronic check",
    "support_calls_90d": 5,
}


def test_quickstart_through_the_sdk(mlsvc_server: RunningServer) -> None:
    with Client(mlsvc_server.url) as client:
        ds = client.datasources.create(CHURN, name="churn-sdk")
        assert ds.status == "PENDING"
        seen: list[str] = []
        ds = client.datasources.wait(ds.id, timeout=120, on_progress=lambda r: seen.append(r.status))
        assert ds.status == "COMPLETED" and ds.row_count == 5000 and ds.data_schema is not None
        assert "PENDING" in seen or "INPROGRESS" in seen
        model = client.models.create("churn-sdk", ds.id, time_budget_s=4)
        model = client.models.wait(model.id, timeout=180)
        assert model.version == 1 and model.metrics["BinaryAUC"] > 0.75
        answer = client.predict("churn-sdk", RECORD)
        assert answer.version == 1 and answer.predictions[0].predicted_label in ("yes", "no")
        listed = [m.id for m in client.models.iter(name="churn-sdk")]
        assert listed == [model.id]
        assert model.importances and model.importances[0]["attribute"] in RECORD.keys() | {
            "monthly_charges",
            "total_charges",
            "tech_support",
            "online_security",
        }
        holdout = client.evaluations.get(model.evaluation_id)
        assert holdout.holdout and holdout.value == model.metrics["BinaryAUC"]
        evaluation = client.evaluations.wait(client.evaluations.create("churn-sdk", ds.id).id, timeout=120)
        assert evaluation.rows == 5000 and evaluation.metric == "BinaryAUC"
        batch = client.batch_predictions.create("churn-sdk", str(mlsvc_server.home / "sdk-batch"), datasource_id=ds.id)
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


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLSVC_URL": server.url}
    return subprocess.run(
        [sys.executable, "-m", "mlsvc.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_quickstart_through_the_cli(mlsvc_server: RunningServer) -> None:
    created = _cli(mlsvc_server, "datasources", "create", CHURN, "--name", "churn-cli", "--wait", "--json")
    assert created.returncode == 0, created.stderr
    ds = json.loads(created.stdout)
    assert ds["status"] == "COMPLETED" and ds["row_count"] == 5000
    table = _cli(mlsvc_server, "datasources", "list")
    assert table.returncode == 0 and ds["id"] in table.stdout
    described = _cli(mlsvc_server, "datasources", "describe", ds["id"])
    assert described.returncode == 0 and "tenure_months" in described.stdout and "NUMERIC" in described.stdout
    trained = _cli(
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
    shown = _cli(mlsvc_server, "models", "get", "churn-cli:1")
    assert shown.returncode == 0 and model["id"] in shown.stdout
    predicted = _cli(mlsvc_server, "predict", "churn-cli", json.dumps(RECORD), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictions"][0]["predicted_label"] in ("yes", "no")
    human = _cli(mlsvc_server, "predict", "churn-cli", json.dumps(RECORD))
    assert human.returncode == 0 and "v1" in human.stdout
    aliased = _cli(mlsvc_server, "models", "alias", "churn-cli", "staging", "1", "--json")
    assert aliased.returncode == 0 and "staging" in json.loads(aliased.stdout)["aliases"]
    models = _cli(mlsvc_server, "models", "list", "--name", "churn-cli", "--json")
    assert [m["id"] for m in json.loads(models.stdout)] == [model["id"]]
    described = _cli(mlsvc_server, "models", "describe", "churn-cli")
    assert described.returncode == 0, described.stderr
    for words in ("leaderboard", "★", "ROC curve", "TPR", "permutation importance", "at these thresholds"):
        assert words in described.stdout, words
    evaluation = _cli(mlsvc_server, "evaluations", "get", model["evaluation_id"])
    assert evaluation.returncode == 0 and "AUC" in evaluation.stdout
    out = mlsvc_server.home / "cli-batch"
    batch = _cli(mlsvc_server, "batch", "create", "churn-cli", str(out), "--datasource", ds["id"], "--wait", "--json")
    assert batch.returncode == 0, batch.stderr
    assert json.loads(batch.stdout)["rows_scored"] == 5000
    listed = _cli(mlsvc_server, "batch", "list")
    assert listed.returncode == 0 and json.loads(batch.stdout)["id"] in listed.stdout
    shown = _cli(mlsvc_server, "batch", "get", json.loads(batch.stdout)["id"])
    assert shown.returncode == 0 and "manifest" in shown.stdout
    evaluations = _cli(mlsvc_server, "evaluations", "list", "--model-id", model["id"], "--json")
    assert [e["id"] for e in json.loads(evaluations.stdout)] == [model["evaluation_id"]]
    threshold = _cli(mlsvc_server, "models", "update", "churn-cli:1", "--threshold", "0.3", "--tag", "team=a", "--json")
    assert threshold.returncode == 0, threshold.stderr
    assert json.loads(threshold.stdout)["score_threshold"] == 0.3 and json.loads(threshold.stdout)["tags"] == {
        "team": "a"
    }
    renamed = _cli(mlsvc_server, "datasources", "update", ds["id"], "--name", "churn-renamed", "--json")
    assert json.loads(renamed.stdout)["name"] == "churn-renamed"
    out_of_range = _cli(mlsvc_server, "models", "update", "churn-cli:1", "--threshold", "2")
    assert out_of_range.returncode == 2 and "validation_error" in out_of_range.stderr
    deleted = _cli(mlsvc_server, "models", "delete", "churn-cli:1", "--json")
    assert json.loads(deleted.stdout)["status"] == "DELETED"
    gone = _cli(mlsvc_server, "datasources", "delete", ds["id"], "--json")
    assert json.loads(gone.stdout)["status"] == "DELETED"


def test_cli_errors_are_one_line_with_meaningful_exit_codes(mlsvc_server: RunningServer) -> None:
    missing = _cli(mlsvc_server, "models", "get", "no-such-model")
    assert missing.returncode == 3 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad_json = _cli(mlsvc_server, "predict", "x", "{not json")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    refused = _cli(mlsvc_server, "datasources", "create", "ftp://host/x.csv")
    assert refused.returncode == 2 and "unsupported_uri" in refused.stderr
    failed = _cli(mlsvc_server, "datasources", "create", CHURN, "--target", "nope", "--wait")
    assert failed.returncode == 4 and "nope" in failed.stderr
    offline = subprocess.run(
        [sys.executable, "-m", "mlsvc.cli", "datasources", "list", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 6 and "cannot reach" in offline.stderr
