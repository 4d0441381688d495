"""The console's doing pages in a real browser: create a datasource and train a model through the forms, watching
both finish, then predict with the form built from the model's schema and get what the API answers; start a batch
prediction and see its rows scored; see a recommender's figures against most-popular and a user's recommendations.
Every action is checked to have been the REST API call a program makes."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlsvc.datasources.values import BINARY_FALSE, BINARY_TRUE
from tests.rest import completed
from tests.servers import CHURN, RunningServer

WAIT_MS = 120_000  # a job's longest wait in the browser: the budgets are seconds; a loaded machine is slower
DONE = "[data-status=COMPLETED], [data-status=FAILED]"


def finished(page: Any, where: str) -> str:
    """Wait until the live part ``where`` shows its job ended, and say how (COMPLETED or FAILED)."""
    status = page.wait_for_selector(f"{where} :is({DONE})", timeout=WAIT_MS)
    return str(status.get_attribute("data-status"))


def fits_a_phone(page: Any) -> None:
    """At a phone's width the page does not scroll sideways (only its tables may, inside their wrappers)."""
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 860})


def posted(page: Any, path: str) -> bool:
    return any(url.endswith(path) for url in page.requested)


@pytest.fixture(scope="module")
def churn_model(api: httpx.Client) -> dict[str, Any]:
    """A BINARY churn model made through the API (the batch test's model)."""
    ds = completed(api, "/v1/datasources", {"data_uri": str(CHURN), "target": "churned"})
    return completed(api, "/v1/models", {"name": "console-batch", "datasource_id": ds["id"], "time_budget_s": 3})


def test_create_train_and_predict_through_the_forms(mlsvc_server: RunningServer, api: httpx.Client, page: Any) -> None:
    page.goto(f"{mlsvc_server.url}/console/new")
    page.fill("#ds-uri", str(CHURN))
    page.fill("#ds-target", "churned")
    page.click("#new-datasource button[type=submit]")
    page.wait_for_url("**/console/new?datasource=*")
    assert finished(page, "#flow-datasource") == "COMPLETED", page.inner_text("#flow-datasource")
    ds_id = page.get_attribute("#flow-datasource", "data-id")
    ds = api.get(f"/v1/datasources/{ds_id}").json()
    assert ds["target"] == "churned" and ds["data_uri"].endswith("churn.csv")
    assert posted(page, "/v1/datasources")

    page.fill("#ml-name", "console-flow")
    page.fill("#ml-budget", "3")
    page.click("#new-model button[type=submit]")
    page.wait_for_url("**/console/new?datasource=*&model=*")
    assert finished(page, "#flow-model") == "COMPLETED", page.inner_text("#flow-model")
    model = api.get(f"/v1/models/{page.get_attribute('#flow-model', 'data-id')}").json()
    assert model["name"] == "console-flow" and model["datasource_id"] == ds_id and model["time_budget_s"] == 3

    page.click("#try-link")
    page.wait_for_selector("#try-form")
    inputs = page.locator("#try-form [data-type]")
    # An input per attribute the model reads, typed by its schema.
    assert inputs.evaluate_all("els => els.map(e => e.name)") == [f["attributeName"] for f in model["features"]]
    for feature in model["features"]:
        control = page.locator(f'#try-form [name="{feature["attributeName"]}"]')
        tag, kind = control.evaluate("e => e.tagName"), control.get_attribute("type")
        expected = {"NUMERIC": ("INPUT", "number"), "BINARY": ("SELECT", None)}.get(feature["attributeType"])
        assert expected is None or (tag, kind) == expected, feature
    levels = page.locator('#try-form select[name="contract"] option').evaluate_all("os => os.map(o => o.value)")
    assert sorted(levels) == ["", "month-to-month", "one-year", "two-year"]

    record = fill_with_a_row(page, model["features"], row=7)
    page.click("#try-form button[type=submit]")
    page.wait_for_selector("#prediction-label")
    answer = api.post(f"/v1/models/{model['id']}/predict", json={"record": record}).json()["predictions"][0]
    assert page.inner_text("#prediction-label") == answer["predicted_label"]
    shown = page.locator("#prediction-scores tr.score").evaluate_all(
        "rows => rows.map(r => [r.dataset.class, Number(r.dataset.score)])"
    )
    assert dict(shown) == answer["predicted_scores"] and len(shown) == 2
    assert posted(page, f"/v1/models/{model['id']}/predict")

    # A value the model cannot read comes back as the API's warning.
    page.fill('#try-form [name="monthly_charges"]', "")
    page.fill('#try-form [name="region"]', "no-such-region")
    page.click("#try-form button[type=submit]")
    page.wait_for_selector("#prediction-warnings li")
    del record["monthly_charges"]
    record["region"] = "no-such-region"
    answer = api.post(f"/v1/models/{model['id']}/predict", json={"record": record}).json()["predictions"][0]
    assert answer["warnings"]
    assert page.locator("#prediction-warnings li").all_inner_texts() == answer["warnings"]
    fits_a_phone(page)


def fill_with_a_row(page: Any, features: list[dict[str, Any]], row: int) -> dict[str, Any]:
    """Fill the form with a row of the churn CSV; the record the form must send for it."""
    with CHURN.open(newline="") as f:
        values = list(csv.DictReader(f))[row]
    record: dict[str, Any] = {}
    for feature in features:
        name, kind, raw = feature["attributeName"], feature["attributeType"], values[feature["attributeName"]]
        selector = f'#try-form [name="{name}"]'
        if kind == "BINARY":
            flag = raw.lower() in BINARY_TRUE
            assert flag or raw.lower() in BINARY_FALSE, raw
            page.select_option(selector, "true" if flag else "false")
            record[name] = flag
        elif page.locator(selector).evaluate("e => e.tagName") == "SELECT":
            page.select_option(selector, raw)
            record[name] = raw
        else:
            page.fill(selector, raw)
            record[name] = float(raw) if kind == "NUMERIC" else raw
    return record


def test_a_batch_started_from_the_form_shows_its_rows_scored(
    mlsvc_server: RunningServer, api: httpx.Client, churn_model: dict[str, Any], page: Any, tmp_path: Path
) -> None:
    page.goto(f"{mlsvc_server.url}/console/batch-predictions")
    page.fill("#bp-model", churn_model["id"])
    page.fill("#bp-datasource", churn_model["datasource_id"])
    page.fill("#bp-data-uri", str(CHURN))
    page.fill("#bp-output", str(tmp_path / "out"))
    page.click("#batch-form button[type=submit]")
    # Both inputs given: the API's own message says what to change.
    page.wait_for_selector("#batch-form .form-result.error")
    assert "exactly one of 'datasource_id' or 'data_uri'" in page.inner_text("#batch-form .form-result")

    page.fill("#bp-data-uri", "")
    page.click("#batch-form button[type=submit]")
    page.wait_for_url("**/console/batch-predictions/*")
    assert posted(page, "/v1/batch-predictions")
    assert finished(page, "#batch-status") == "COMPLETED", page.inner_text("#batch")
    batch = api.get(f"/v1/batch-predictions/{page.url.rsplit('/', 1)[-1]}").json()
    assert batch["model_id"] == churn_model["id"] and batch["output_uri"].startswith(str(tmp_path / "out"))
    assert int(page.get_attribute("#rows-scored", "data-value")) == batch["rows_scored"] == 5000
    assert int(page.get_attribute("#invalid-rows", "data-value")) == batch["invalid_row_count"]
    assert page.inner_text("#batch-manifest") == batch["manifest_uri"]
    outputs = page.locator("#batch-outputs tbody tr td:nth-child(2)").all_inner_texts()
    assert outputs == [o["output"] for o in batch["outputs"]] and all(Path(o).exists() for o in outputs)
    assert page.locator(f'#batch a[href="/console/models/{churn_model["id"]}"]').count() == 1
    assert page.locator(f'#batch a[href="/console/datasources/{churn_model["datasource_id"]}"]').count() == 1
    fits_a_phone(page)

    page.goto(f"{mlsvc_server.url}/console/batch-predictions")
    row = page.locator(f'#batch-list tr[data-id="{batch["id"]}"]')
    assert int(row.locator("[data-rows-scored]").get_attribute("data-rows-scored")) == batch["rows_scored"]
    assert row.locator("[data-status]").get_attribute("data-status") == "COMPLETED"


def interactions_csv(folder: Path, users: int = 40, items: int = 30, seed: int = 3) -> Path:
    """Views and purchases of ``users`` × ``items`` with tastes (users prefer a group of items), over a month."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    path = folder / "interactions.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "event_type", "timestamp"])
        for u in range(users):
            group = u % 3
            for n in range(rng.randint(8, 14)):
                item = rng.randrange(10) + 10 * group if rng.random() < 0.8 else rng.randrange(items)
                at = start + timedelta(hours=u * 7 + n * 11 + rng.random())
                event = "purchase" if rng.random() < 0.2 else "view"
                out.writerow([f"u{u:03d}", f"i{item:03d}", event, at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    return path


def test_a_recommender_shows_its_figures_against_most_popular_and_recommends(
    mlsvc_server: RunningServer, api: httpx.Client, page: Any, tmp_path: Path
) -> None:
    ds = completed(api, "/v1/datasources", {"data_uri": str(interactions_csv(tmp_path))})
    model = completed(
        api,
        "/v1/models",
        {"name": "console-shop", "datasource_id": ds["id"], "model_type": "RECOMMENDATION", "time_budget_s": 2},
    )
    figures = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()["metrics"]
    k = model["k"]
    # The try page and the version's page draw the holdout evaluation's figures.
    for path in (f"/console/try/{model['id']}", f"/console/models/{model['id']}"):
        page.goto(mlsvc_server.url + path)
        for metric in ("ndcg", "hit_rate"):
            bars = page.locator(f'#recommendation-metrics [data-metric="{metric}_at_{k}"] .bar')
            drawn = bars.evaluate_all("bs => bs.map(b => [b.dataset.label, Number(b.dataset.value)])")
            mine, base = figures[f"{metric}_at_{k}"], figures[f"baseline_{metric}_at_{k}"]
            assert drawn == [["this model", mine], ["most popular", base]], path

    page.goto(f"{mlsvc_server.url}/console/try/{model['id']}")
    page.fill("#rec-user", "u004")
    page.fill("#rec-user-k", "5")
    page.click("#recommend-box form[data-ask=user_id] button")
    page.wait_for_selector("#rec-list[data-ask=user_id] li")
    shown = page.locator("#rec-list li").evaluate_all("ls => ls.map(l => l.dataset.item)")
    answer = api.post(f"/v1/models/{model['id']}/predict", json={"user_id": "u004", "k": 5}).json()
    assert shown == [r["item_id"] for r in answer["recommendations"]] and len(shown) == 5
    assert posted(page, f"/v1/models/{model['id']}/predict")

    page.fill("#rec-item", "i012")
    page.click("#recommend-box form[data-ask=item_id] button")
    page.wait_for_selector("#rec-list[data-ask=item_id] li")
    shown = page.locator("#rec-list li").evaluate_all("ls => ls.map(l => l.dataset.item)")
    answer = api.post(f"/v1/models/{model['id']}/predict", json={"item_id": "i012", "k": k}).json()
    assert shown == [r["item_id"] for r in answer["recommendations"]] and "i012" not in shown
