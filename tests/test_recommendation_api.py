"""RECOMMENDATION models through the service: train on the example interactions (with item attributes),
beat most-popular on NDCG@10, recommend and find similar items in real time, and batch top-k per user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlsvc.client import Client, NotFoundError
from tests.servers import REPO, RunningServer, run_cli, wait_done

DATA = REPO / "datasources" / "recommendation"


@pytest.fixture(scope="module")
def trained(api: httpx.Client) -> dict[str, Any]:
    interactions = api.post("/v1/datasources", json={"data_uri": str(DATA / "interactions.csv.gz")}).json()
    items = api.post("/v1/datasources", json={"data_uri": str(DATA / "items.csv")}).json()
    for ds in (interactions, items):
        assert wait_done(api, f"/v1/datasources/{ds['id']}")["status"] == "COMPLETED"
    created = api.post(
        "/v1/models",
        json={
            "name": "shop",
            "datasource_id": interactions["id"],
            "model_type": "RECOMMENDATION",
            "k": 10,
            "time_budget_s": 20,
            "items_datasource_id": items["id"],
        },
    )
    assert created.status_code == 202, created.text
    model = wait_done(api, f"/v1/models/{created.json()['id']}", timeout=300)
    assert model["status"] == "COMPLETED", model["message"]
    return {"model": model, "interactions": interactions}


@pytest.mark.slow
def test_the_selected_recommender_beats_most_popular(api: httpx.Client, trained: dict[str, Any]) -> None:
    model = trained["model"]
    assert model["model_type"] == "RECOMMENDATION" and model["roles"]["user"] == "user_id"
    assert model["metrics"]["selection_metric"] == "NDCG@10" and model["aliases"] == ["production"]
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["metric"] == "NDCG@10" and ev["baseline"]["name"].lower().startswith("most")
    # The generator's latent tastes make about 2.5x most-popular reachable; a broken loop sits near 1x.
    assert ev["value"] > 1.6 * ev["baseline"]["value"] and ev["value"] > 0.06
    assert {"candidate", "family", "validation_score"} <= set(model["leaderboard"][0])


def test_recommend_for_a_known_user_excludes_what_they_saw(api: httpx.Client, trained: dict[str, Any]) -> None:
    raw = pd.read_csv(DATA / "interactions.csv.gz", dtype=str)
    user = raw["user_id"].value_counts().index[0]
    seen = set(raw.loc[raw["user_id"] == user, "item_id"])
    answer = api.post("/v1/models/shop/predict", json={"user_id": user, "k": 10}).json()
    items = [r["item_id"] for r in answer["recommendations"]]
    assert len(items) == 10 and not set(items) & seen and answer["cold_start"] is False
    scores = [r["score"] for r in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    with_seen = api.post("/v1/models/shop/predict", json={"user_id": user, "k": 50, "exclude_seen": False}).json()
    assert set(r["item_id"] for r in with_seen["recommendations"]) & seen


def test_unknown_users_get_popular_items_and_unknown_items_are_404(api: httpx.Client, trained: dict[str, Any]) -> None:
    answer = api.post("/v1/models/shop/predict", json={"user_id": "nobody-ever", "k": 5}).json()
    assert answer["cold_start"] is True and len(answer["recommendations"]) == 5
    raw = pd.read_csv(DATA / "interactions.csv.gz", dtype=str)
    popular = raw["item_id"].value_counts().index[:20]
    assert {r["item_id"] for r in answer["recommendations"]} <= set(popular)
    item = raw["item_id"].iloc[0]
    similar = api.post("/v1/models/shop/predict", json={"item_id": item, "k": 5}).json()
    assert len(similar["recommendations"]) == 5 and item not in {r["item_id"] for r in similar["recommendations"]}
    missing = api.post("/v1/models/shop/predict", json={"item_id": "no-such-item"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    records = api.post("/v1/models/shop/predict", json={"record": {"user_id": "x"}})
    assert records.status_code == 422 and "user_id" in records.json()["error"]["message"]


def test_batch_gives_k_rows_per_user(api: httpx.Client, trained: dict[str, Any], tmp_path: Path) -> None:
    users = pd.DataFrame({"user_id": ["U00001", "U00002", "U00001", "stranger"]})
    users.to_csv(tmp_path / "users.csv", index=False)
    created = api.post(
        "/v1/batch-predictions",
        json={"model": "shop", "data_uri": str(tmp_path / "users.csv"), "output_uri": str(tmp_path / "out")},
    ).json()
    bp = wait_done(api, f"/v1/batch-predictions/{created['id']}")
    assert bp["status"] == "COMPLETED", bp["message"]
    out = pd.read_csv(bp["outputs"][0]["output"], dtype={"user_id": str, "item_id": str})
    assert list(out.columns) == ["user_id", "rank", "item_id", "score", "cold_start"]
    assert out.groupby("user_id").size().to_dict() == {"U00001": 10, "U00002": 10, "stranger": 10}
    assert out.loc[out["user_id"] == "stranger", "cold_start"].all()
    assert bp["rows_scored"] == 3


def test_sdk_and_cli(mlsvc_server: RunningServer, trained: dict[str, Any]) -> None:
    with Client(mlsvc_server.url) as client:
        answer = client.recommend("shop", "U00003", k=3)
        assert len(answer.recommendations) == 3 and answer.user_id == "U00003"
        similar = client.similar_items("shop", answer.recommendations[0].item_id, k=4)
        assert len(similar.recommendations) == 4
        with pytest.raises(NotFoundError):
            client.similar_items("shop", "no-such-item")
    shown = run_cli(mlsvc_server, "recommend", "shop", "U00003", "--k", "3", "--json", timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["recommendations"]) == 3
    table = run_cli(mlsvc_server, "similar", "shop", "no-such-item", timeout=120)
    assert table.returncode == 3 and "no-such-item" in table.stderr
