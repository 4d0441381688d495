"""Promotion over real HTTP: whether a new version becomes `production` is decided by the scores recorded on the
same held-out rows, and a production version that cannot score the new rows loses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.rest import completed

ROWS = 600


def _frame(seed: int) -> pd.DataFrame:
    """A label that `signal` nearly decides, beside `const`, one value on every row: a model that sees only
    `const` scores every row alike, so its AUC is 0.5 exactly, on any rows."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=ROWS).round(4)
    label = np.where(signal + 0.3 * rng.normal(size=ROWS) > 0, "yes", "no")
    return pd.DataFrame({"signal": signal, "const": "same", "label": label})


def _train(api: httpx.Client, ds: dict[str, Any], **body: Any) -> dict[str, Any]:
    """A new version of 'promo' (the search's budget does not matter here: the data decide by a wide margin)."""
    return completed(api, "/v1/models", {"name": "promo", "datasource_id": ds["id"], "time_budget_s": 1, **body})


def _holdout_value(api: httpx.Client, model: dict[str, Any]) -> float:
    ev = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
    assert ev["holdout"] is True and ev["metric"] == "BinaryAUC"
    return float(ev["value"])


@pytest.fixture(scope="module")
def versions(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Versions of 'promo' trained one after another: weak, strong, weak again, never promoted, and one on a
    datasource where `signal` holds words instead of numbers."""
    folder: Path = tmp_path_factory.mktemp("promotion")
    _frame(0).to_csv(folder / "numbers.csv", index=False)
    words = _frame(1)
    words["signal"] = np.where(words["signal"] > 0, "high", "low")
    words.to_csv(folder / "words.csv", index=False)
    numbers = completed(api, "/v1/datasources", {"data_uri": str(folder / "numbers.csv"), "target": "label"})
    as_words = completed(api, "/v1/datasources", {"data_uri": str(folder / "words.csv"), "target": "label"})
    blind = {"attributes": {"signal": "drop"}}
    trained = {
        "weak": _train(api, numbers, recipe=blind),
        "strong": _train(api, numbers),
        "weak_again": _train(api, numbers, recipe=blind),  # the same seed: the same held-out rows as "strong"
        "never": _train(api, numbers, promote="never"),
        "words": _train(api, as_words),
    }
    assert [m["version"] for m in trained.values()] == [1, 2, 3, 4, 5]
    return {key: api.get(f"/v1/models/{m['id']}").json() for key, m in trained.items()}  # aliases as they end


def test_the_first_version_is_promoted(versions: dict[str, dict[str, Any]]) -> None:
    assert versions["weak"]["promotion"] == {"promoted": True, "reason": "the first production version of 'promo'"}


def test_a_version_that_scores_better_on_the_same_rows_is_promoted(
    api: httpx.Client, versions: dict[str, dict[str, Any]]
) -> None:
    strong = versions["strong"]
    challenger = _holdout_value(api, strong)
    assert _holdout_value(api, versions["weak"]) == 0.5 and challenger > 0.5  # the premise: `signal` helps
    assert strong["promotion"] == {
        "promoted": True,
        "reason": f"BinaryAUC {challenger:.4f} vs 0.5000 for production v1 on the same held-out rows",
        "previous_version": 1,
    }


def test_a_version_that_scores_worse_on_the_same_rows_is_not_promoted(
    api: httpx.Client, versions: dict[str, dict[str, Any]]
) -> None:
    # Production (v2) scored on v3's held-out rows, which are v2's own: its figure is its holdout evaluation's.
    champion = _holdout_value(api, versions["strong"])
    assert _holdout_value(api, versions["weak_again"]) == 0.5
    assert versions["weak_again"]["promotion"] == {
        "promoted": False,
        "reason": f"BinaryAUC 0.5000 vs {champion:.4f} for production v2 on the same held-out rows",
        "production_version": 2,
    }
    assert versions["weak_again"]["aliases"] == []


def test_promote_never_leaves_production_alone(versions: dict[str, dict[str, Any]]) -> None:
    assert versions["never"]["promotion"] == {"promoted": False, "reason": "promote is 'never'"}
    assert versions["never"]["aliases"] == []


def test_a_production_version_that_cannot_score_the_new_rows_loses(
    api: httpx.Client, versions: dict[str, dict[str, Any]]
) -> None:
    words = versions["words"]
    signal = {f["attributeName"]: f["attributeType"] for f in words["features"]}["signal"]
    assert signal == "CATEGORICAL"  # v2 learnt `signal` as a number
    promotion = words["promotion"]
    assert promotion["promoted"] is True
    assert promotion["reason"].startswith("production v2 could not score these rows (")
    assert words["aliases"] == ["production"]
    production = api.get("/v1/models/promo:production").json()
    assert production["id"] == words["id"] and api.get("/v1/models/promo").json()["id"] == words["id"]
    assert all(versions[key]["aliases"] == [] for key in ("weak", "weak_again", "never"))
    assert api.get(f"/v1/models/{versions['strong']['id']}").json()["aliases"] == []


def test_deleting_production_takes_force_and_the_name_falls_back_to_the_last_promoted(
    api: httpx.Client, versions: dict[str, dict[str, Any]]
) -> None:
    # Last in the module: it deletes versions. v5 (words) is production; v3 was rejected, v4 told not to run.
    assert api.get("/v1/models/promo").json()["version"] == 5
    refused = api.delete("/v1/models/promo:5")
    assert refused.status_code == 409 and "['production']" in refused.json()["error"]["message"]
    gone = api.delete("/v1/models/promo:5", params={"force": "true"}).json()
    # The newest COMPLETED version is v4 (never promoted); the name goes to v2, the last that was production.
    assert gone["message"] == "deleted with its alias(es) ['production']; 'promo' now finds version 2 (COMPLETED)"
    assert api.get("/v1/models/promo").json()["version"] == 2
    assert (
        api.post("/v1/models/promo/predict", json={"record": {"signal": 1.0, "const": "same"}}).json()["version"] == 2
    )
    for version in (2, 1):
        assert api.delete(f"/v1/models/promo:{version}", params={"force": "true"}).status_code == 200
    # Left: v3, rejected by promotion, and v4, trained with promote 'never': the name finds v4, which may serve.
    assert api.get("/v1/models/promo").json()["version"] == 4
    assert api.delete("/v1/models/promo:4").status_code == 200
    # Only the rejected v3 is left: the name shows it, but does not serve it silently.
    assert api.get("/v1/models/promo").json()["version"] == 3
    message = api.post("/v1/models/promo/predict", json={"record": {"signal": 1.0, "const": "same"}}).json()
    assert "was not promoted" in message["error"]["message"] and "promo:3" in message["error"]["message"]
    assert (
        api.post("/v1/models/promo:3/predict", json={"record": {"signal": 1.0, "const": "same"}}).json()["version"] == 3
    )
