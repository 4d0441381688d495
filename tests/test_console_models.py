"""The console's model and evaluation pages in a real browser, on models the tests train (BINARY churn, MULTICLASS
iris, REGRESSION of iris's petal width): every chart is drawn from the evaluation the API serves (points, bars and
rows counted against it), the threshold slider follows the evaluation's own table and saving it sets the model's
score_threshold, an alias moves from the page, a training version's page follows its job, and a phone's screen
holds every page."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest

from tests.datasets import iris_frame
from tests.rest import completed
from tests.servers import CHURN, RunningServer, wait_done

PREFIX = f"console-{secrets.token_hex(3)}-"  # names of this module's models, apart from other modules' on the server


@pytest.fixture(scope="module")
def trained(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A COMPLETED model of each type, trained side by side, each with its holdout evaluation."""
    folder = tmp_path_factory.mktemp("console-models")
    iris = folder / "iris.csv"
    iris_frame().to_csv(iris, index=False)
    sources = {"binary": (CHURN, "churned"), "multiclass": (iris, "species"), "regression": (iris, "petal_width")}
    made = {
        kind: api.post("/v1/datasources", json={"data_uri": str(uri), "target": target}).json()
        for kind, (uri, target) in sources.items()
    }
    models = {}
    for kind, ds in made.items():
        assert wait_done(api, f"/v1/datasources/{ds['id']}")["status"] == "COMPLETED"
        body = {"name": PREFIX + kind, "datasource_id": ds["id"], "time_budget_s": 3}
        models[kind] = api.post("/v1/models", json=body).json()
    done = {}
    for kind, model in models.items():
        model = wait_done(api, f"/v1/models/{model['id']}")
        assert model["status"] == "COMPLETED", model["message"]
        evaluation = api.get(f"/v1/evaluations/{model['evaluation_id']}").json()
        done[kind] = {"model": model, "evaluation": evaluation, "insights": evaluation["insights"]}
    return done


def _open(page: Any, server: RunningServer, path: str) -> None:
    answer = page.goto(server.url + path)
    assert answer.status == 200, page.content()


def _texts(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def _counts_at(insights: dict[str, Any], threshold_index: int) -> dict[str, int]:
    """The confusion counts the API's threshold table implies at a row: recall = tp / positives and
    false-positive rate = fp / negatives."""
    row, p, n = insights["thresholds"][threshold_index], insights["positives"], insights["negatives"]
    tp, fp = round((row["recall"] or 0) * p), round((row["false_positive_rate"] or 0) * n)
    return {"tp": tp, "fp": fp, "fn": p - tp, "tn": n - fp}


def _shown_counts(page: Any) -> dict[str, int]:
    return {k: int(page.inner_text(f"#threshold-view [data-field={k}]")) for k in ("tp", "fp", "tn", "fn")}


def test_the_models_list_groups_versions_by_name_with_status_metric_and_aliases(
    trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    _open(page, server, f"/console/models?name_prefix={PREFIX}")
    groups = page.locator(".model-group")
    assert sorted(groups.evaluate_all("gs => gs.map(g => g.dataset.name)")) == sorted(PREFIX + kind for kind in trained)
    binary = trained["binary"]["model"]
    row = page.locator(f"tr[data-id='{binary['id']}']")
    assert row.locator(".status").inner_text() == "COMPLETED"
    # The metric is the holdout AUC the API reports, and the first version became production.
    assert f"AUC {binary['metrics']['BinaryAUC']:.4g}" in row.inner_text()
    assert row.locator(".badge").all_inner_texts() == binary["aliases"] == ["production"]
    # A name's heading leads to its versions only.
    page.click(f".model-group[data-name='{binary['name']}'] h2 a")
    page.wait_for_url(re.compile(r".*/console/models\?name="))
    assert page.locator(".model-group").count() == 1
    assert page.locator(f"tr[data-id='{binary['id']}'] a").first.get_attribute("href") == (
        f"/console/models/{binary['id']}"
    )


def test_a_binary_version_page_draws_its_leaderboard_curves_histograms_and_importances(
    trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    model, insights = trained["binary"]["model"], trained["binary"]["insights"]
    _open(page, server, f"/console/models/{model['id']}")
    assert page.locator("#leaderboard-card tbody tr").count() == len(model["leaderboard"]) > 0
    assert page.locator("#leaderboard tr.selected").count() == 1
    scored = [row for row in model["leaderboard"] if row["validation_score"] is not None]
    assert page.locator("#leaderboard tr").count() == len(scored)
    roc = page.locator("#roc polyline.line")
    assert roc.count() == 1
    assert int(roc.get_attribute("data-points")) == len(insights["roc_curve"])
    assert len(roc.get_attribute("points").split()) == len(insights["roc_curve"])
    pr = page.locator("#precision-recall polyline.line").first
    assert int(pr.get_attribute("data-points")) == len(insights["pr_curve"])
    histogram = insights["score_histogram"]
    for label, counts in (("positive", histogram["positive"]), ("negative", histogram["negative"])):
        bars = page.locator(f"#score-histogram-{label} rect.bar")
        assert bars.count() == len(counts) == len(histogram["edges"]) - 1
        assert [float(v) for v in bars.evaluate_all("bs => bs.map(b => b.dataset.value)")] == counts
    drawn = page.locator("#importances rect.bar").evaluate_all("bs => bs.map(b => b.dataset.label)")
    # (A job short of time skips them, and says so in its message.)
    assert drawn == [item["attribute"] for item in model["importances"][:25]]
    # The holdout metric against the baseline, and why the version was (or not) promoted.
    summary = page.inner_text("#evaluation-summary")
    assert trained["binary"]["evaluation"]["vs_baseline"] in summary
    assert model["promotion"]["reason"] in page.inner_text("#promotion")
    assert page.locator("#recommendation").count() == 0


def test_the_threshold_slider_follows_the_evaluation_table_and_saving_sets_the_threshold(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    model, insights = trained["binary"]["model"], trained["binary"]["insights"]
    _open(page, server, f"/console/models/{model['id']}")
    slider = page.locator("#threshold")
    assert float(slider.input_value()) == 0.5
    # At the model's threshold the counts are the evaluation's own confusion counts.
    at = insights["at_threshold"]
    assert _shown_counts(page) == {k: at[k] for k in ("tp", "fp", "tn", "fn")}
    asked = len(page.requested)
    slider.focus()
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    assert float(slider.input_value()) == 0.57
    assert page.inner_text("#threshold-value") == "0.57"
    assert _shown_counts(page) == _counts_at(insights, 57)
    row = insights["thresholds"][57]
    for field in ("precision", "recall", "false_positive_rate", "accuracy"):
        assert float(page.inner_text(f"#threshold-view [data-field={field}]")) == pytest.approx(row[field], abs=1e-3)
    # Down to the other end: everything predicted positive.
    page.keyboard.press("Home")
    assert _shown_counts(page) == {"tp": insights["positives"], "fp": insights["negatives"], "tn": 0, "fn": 0}
    page.keyboard.press("PageUp")  # a tenth of the range
    index = round(float(slider.input_value()) * 100)
    assert index > 0 and _shown_counts(page) == _counts_at(insights, index)
    assert len(page.requested) == asked, "the slider asked the server for something"
    # The threshold's point on the ROC curve moved with it.
    frame = page.locator("#roc rect.frame")
    x0, width = (float(frame.get_attribute(a)) for a in ("x", "width"))
    fpr = insights["thresholds"][index]["false_positive_rate"]
    assert float(page.get_attribute("#roc circle.cursor", "cx")) == pytest.approx(x0 + width * fpr, abs=0.1)
    page.click("button[data-save-threshold]")
    saved = page.locator("#threshold-saved")
    saved.filter(has_text="Saved").wait_for()
    assert saved.inner_text() == f"Saved: the score threshold is now {index / 100:.2f}."
    assert api.get(f"/v1/models/{model['id']}").json()["score_threshold"] == pytest.approx(index / 100)
    # The page opens at the saved threshold.
    page.reload()
    assert float(slider.input_value()) == index / 100 and _shown_counts(page) == _counts_at(insights, index)


def test_a_multiclass_page_shows_the_confusion_matrix_and_f1_of_each_class(
    trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    model, insights = trained["multiclass"]["model"], trained["multiclass"]["insights"]
    _open(page, server, f"/console/models/{model['id']}")
    labels, matrix = insights["confusion_matrix"]["labels"], insights["confusion_matrix"]["matrix"]
    cells = page.locator("#confusion td.cell")
    assert cells.count() == len(labels) ** 2 == 9
    shown = {
        (c["t"], c["p"]): int(c["n"])
        for c in cells.evaluate_all(
            "cs => cs.map(c => ({t: c.dataset.true, p: c.dataset.predicted, n: c.textContent}))"
        )
    }
    assert shown == {(t, p): matrix[i][j] for i, t in enumerate(labels) for j, p in enumerate(labels)}
    bars = page.locator("#per-class rect.bar")
    assert bars.evaluate_all("bs => bs.map(b => b.dataset.label)") == list(insights["per_class"])
    values = [float(v) for v in bars.evaluate_all("bs => bs.map(b => b.dataset.value)")]
    assert values == pytest.approx([figures["f1"] or 0 for figures in insights["per_class"].values()])
    assert page.locator("#threshold").count() == 0
    assert page.locator("#leaderboard-card tbody tr").count() == len(model["leaderboard"])


def test_a_regression_page_shows_the_residuals_against_the_baseline(
    trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    model, insights = trained["regression"]["model"], trained["regression"]["insights"]
    _open(page, server, f"/console/models/{model['id']}")
    bars = page.locator("#residuals rect.bar")
    assert [float(v) for v in bars.evaluate_all("bs => bs.map(b => b.dataset.value)")] == insights[
        "residual_histogram"
    ]["counts"]
    rmse = page.locator("#evaluation-summary tr", has_text="RMSE").locator("td.num").all_inner_texts()
    assert [float(v) for v in rmse] == pytest.approx([insights["rmse"], insights["baseline"]["value"]], rel=1e-3)
    assert page.locator("#threshold, #confusion").count() == 0
    # Predicted against actual: one point per row of the evaluation's sample, at its figures.
    sample = insights["predicted_vs_actual"]
    assert sample and len(sample) == min(insights["rows"], 500)
    points = page.locator("#predicted-vs-actual circle.point")
    xy = points.evaluate_all("ps => ps.map(p => [Number(p.dataset.x), Number(p.dataset.y)])")
    assert xy == [[row["actual"], row["predicted"]] for row in sample]


def test_the_evaluations_list_and_page_show_any_evaluation_and_its_training_overlap(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    model = trained["binary"]["model"]
    # Evaluated on its own training datasource: the metrics are optimistic, and the page says so.
    overlapping = completed(api, "/v1/evaluations", {"model": model["id"], "datasource_id": model["datasource_id"]})
    assert overlapping["training_overlap"]
    _open(page, server, f"/console/evaluations?model_id={model['id']}")
    ids = page.locator("#evaluations-list tr[data-id]").evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert sorted(ids) == sorted([model["evaluation_id"], overlapping["id"]])
    page.click(f"tr[data-id='{overlapping['id']}'] td a >> nth=0")
    page.wait_for_url(f"{server.url}/console/evaluations/{overlapping['id']}")
    assert overlapping["training_overlap"]["note"] in page.inner_text("#training-overlap")
    insights = overlapping["insights"]
    assert int(page.get_attribute("#roc polyline.line", "data-points")) == len(insights["roc_curve"])
    assert page.locator("#score-histogram-positive rect.bar").count() == len(insights["score_histogram"]["positive"])
    # The same slider, over this evaluation's rows.
    page.fill("#threshold", "0.3")
    page.dispatch_event("#threshold", "input")
    assert _shown_counts(page) == _counts_at(insights, 30)
    # The unfiltered list holds it too, and links to the model.
    _open(page, server, "/console/evaluations")
    assert page.locator(f"tr[data-id='{overlapping['id']}']").count() == 1


def test_a_training_version_page_follows_its_job_then_takes_an_alias(
    api: httpx.Client, trained: dict[str, Any], server: RunningServer, page: Any
) -> None:
    first = trained["binary"]["model"]
    body = {"name": first["name"], "datasource_id": first["datasource_id"], "time_budget_s": 2, "promote": "never"}
    created = api.post("/v1/models", json=body).json()
    _open(page, server, f"/console/models/{created['id']}")
    assert page.get_attribute("#model-live", "data-live") == "1"
    assert page.inner_text("#model-status .status") in ("PENDING", "INPROGRESS")
    page.evaluate("window.notReloaded = true")
    # The page follows the job without a reload, until the version is COMPLETED with its leaderboard.
    page.locator("#model-status .status.COMPLETED").wait_for(timeout=120_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.get_attribute("#model-live", "data-live") == "0"
    done = wait_done(api, f"/v1/models/{created['id']}")
    assert page.locator("#leaderboard-card tbody tr").count() == len(done["leaderboard"])
    assert "Not promoted" in page.inner_text("#promotion")
    # Point production at this version from its page: the API's alias follows.
    page.fill("#alias-name", "production")
    page.press("#alias-name", "Enter")
    page.locator("#alias-result", has_text="now points").wait_for()
    assert api.get(f"/v1/models/{first['name']}:production").json()["id"] == created["id"]
    assert page.locator("#model-badges .badge").all_inner_texts() == ["production"]
    assert api.get(f"/v1/models/{first['id']}").json()["aliases"] == []
    earlier = page.locator("#model-versions li").filter(has=page.locator(f"a[href='/console/models/{first['id']}']"))
    assert earlier.locator(".badge").count() == 0
    api.put(f"/v1/models/{first['name']}/aliases/production", json={"version": first["version"]}).raise_for_status()


def test_pages_fit_a_phone_screen(trained: dict[str, Any], server: RunningServer, page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    paths = [
        f"/console/models?name_prefix={PREFIX}",
        "/console/evaluations",
        *(f"/console/models/{t['model']['id']}" for t in trained.values()),
        f"/console/evaluations/{trained['binary']['model']['evaluation_id']}",
    ]
    for path in paths:
        _open(page, server, path)
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => !e.closest('.table-wrap') && e.getBoundingClientRect().right > innerWidth + 1)
                .map(e => e.tagName + '#' + e.id + '.' + e.className)"""
        )
        assert wide == [], f"{path}: {wide}"


def test_an_unknown_model_or_evaluation_is_a_page_that_says_so(server: RunningServer) -> None:
    for path, kind in (("/console/models/nope-model", "model"), ("/console/evaluations/nope-ev", "evaluation")):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 404 and "not found" in answer.text and kind in answer.text
    assert httpx.get(server.url + "/console/models?next_token=garbage").status_code == 400
