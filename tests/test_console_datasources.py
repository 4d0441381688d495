"""The console's overview and datasource pages in a real browser, on datasources the tests make: every chart is
drawn from the datasource's statistics (its bars, labels and order are the API's figures), the list pages by the
API's next_token and follows a running job, an unknown id is a 404 page, and the pages fit a phone and work from
the keyboard."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.servers import CHURN, RunningServer, run_jobs, wait_done

PREFIX = "console-ds-"
KINDS = ("datasources", "models", "evaluations", "batch-predictions")
STATUSES = ("PENDING", "INPROGRESS", "COMPLETED", "FAILED")
COUNT_CAP = 100
INVALID_AT = 9  # the data row whose amount is not a number
BLANK_AT = 4  # the data row whose amount is blank (missing, not invalid)


def reviews_csv(path: Path) -> tuple[Path, int]:
    """A small CSV with a TEXT column, a NUMERIC one holding one word and one blank, and a yes/no target; the file
    and the line (1-based, the header is line 1) of the invalid value."""
    rng = random.Random(7)
    adjectives = ["quick", "slow", "friendly", "rude", "helpful", "late", "careful", "cheap", "clean", "noisy"]
    nouns = ["delivery", "support", "courier", "refund", "packaging", "driver", "agent", "order"]
    lines = ["id,amount,review,label"]
    for i in range(1, 41):
        amount = "abc" if i == INVALID_AT else "" if i == BLANK_AT else f"{rng.uniform(1, 90):.2f}"
        words = [rng.choice(adjectives), rng.choice(nouns), "and", rng.choice(adjectives), rng.choice(nouns)]
        lines.append(f"{i},{amount},{' '.join(words)} this time,{'yes' if rng.random() < 0.4 else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return path, INVALID_AT + 1


@pytest.fixture(scope="module")
def made(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two COMPLETED datasources: the churn example (a 70 % rearrangement) and the reviews CSV."""
    reviews, invalid_line = reviews_csv(tmp_path_factory.mktemp("console-ds") / "reviews.csv")
    bodies = {
        "churn": {
            "data_uri": str(CHURN),
            "name": PREFIX + "churn",
            "target": "churned",
            "rearrangement": {"splitting": {"percentBegin": 0, "percentEnd": 70}},
        },
        "reviews": {"data_uri": str(reviews), "name": PREFIX + "reviews", "target": "label"},
    }
    ids = {}
    for key, body in bodies.items():
        response = api.post("/v1/datasources", json=body)
        assert response.status_code == 202, response.text
        ids[key] = response.json()["id"]
    done: dict[str, Any] = {key: wait_done(api, f"/v1/datasources/{rid}") for key, rid in ids.items()}
    for ds in done.values():
        assert ds["status"] == "COMPLETED", ds["message"]
    done["invalid_line"] = invalid_line
    return done


def bars(figure: Any) -> list[tuple[str, float]]:
    """The (label, value) of every bar a chart draws, in order."""
    found = figure.locator("rect.bar").evaluate_all("bars => bars.map(b => [b.dataset.label, b.dataset.value])")
    return [(label, float(value)) for label, value in found]


def chart(page: Any, attribute: str, kind: str) -> Any:
    return page.locator(f"section.attribute[data-attribute='{attribute}'] figure[data-chart='{kind}']")


def edges_of(labels: list[str]) -> list[float]:
    """A histogram's edges as its bars' labels ("17.13 to 386.5") say them."""
    pairs = [[float(part.replace(",", "")) for part in label.split(" to ")] for label in labels]
    return [pairs[0][0], *(high for _, high in pairs)]


def test_a_datasource_page_draws_every_chart_from_its_statistics(
    page: Any, server: RunningServer, made: dict[str, Any]
) -> None:
    ds = made["churn"]
    stats = ds["statistics"]
    page.goto(f"{server.url}/console/datasources/{ds['id']}")
    expect(page.locator("h1")).to_have_text(ds["name"])
    for name, s in stats["attributes"].items():
        if s["type"] == "NUMERIC":
            drawn = bars(chart(page, name, "histogram"))
            assert [v for _, v in drawn] == s["histogram"]["counts"], name
            assert edges_of([label for label, _ in drawn]) == pytest.approx(s["histogram"]["edges"], rel=1e-3)
        elif s["type"] == "CATEGORICAL" and s["distinct"] < s["count"]:
            drawn = bars(chart(page, name, "top-values"))
            assert drawn == [(t["value"], t["count"]) for t in s["top_values"]], name
        elif s["type"] == "CATEGORICAL":  # an identifier: a different value in every row, no chart of ones
            assert chart(page, name, "top-values").count() == 0
        elif s["type"] == "BINARY":
            assert bars(chart(page, name, "true-fraction")) == [("true (1)", s["ones"]), ("false (0)", s["zeros"])]
            expect(chart(page, name, "true-fraction")).to_contain_text(f"{s['true_fraction'] * 100:.1f} %")
    ranking = [r["attribute"] for r in stats["target"]["ranking"]]
    drawn = bars(page.locator("#ranking figure[data-chart='ranking']"))
    assert [label for label, _ in drawn] == ranking
    assert [v for _, v in drawn] == [r["mutual_information_normalized"] for r in stats["target"]["ranking"]]
    counts = stats["target"]["class_counts"]
    assert bars(page.locator("#target figure")) == [("true (1)", counts["1"]), ("false (0)", counts["0"])]
    # The schema: each attribute's type, and the evidence for it from the data.
    for attribute in ds["schema"]["attributes"]:
        row = page.locator(f"table.schema tr[data-attribute='{attribute['attributeName']}']")
        expect(row.locator("[data-type]")).to_have_text(attribute["attributeType"])
    expect(page.locator("table.schema tr[data-attribute='region'] [data-why]")).to_contain_text("leading zeros")
    expect(page.locator("table.schema tr[data-attribute='customer_id'] [data-why]")).to_contain_text("identifier")
    partner = stats["attributes"]["partner"]
    expect(page.locator("table.schema tr[data-attribute='partner'] [data-why]")).to_contain_text(
        f"{partner['ones']:,} true and {partner['zeros']:,} false"
    )
    expect(page.locator("#missing")).to_contain_text("internet_service: 'none' is a value")
    expect(page.locator("[data-rearrangement]")).to_have_text("The rows from 0 % to 70 % of the data, in file order.")
    expect(page.locator("dd[data-rows]")).to_contain_text(f"{ds['row_count']:,}: {ds['used_row_count']:,} used")
    expect(page.locator("#invalid")).to_contain_text("None: every row was read.")


def test_a_text_attribute_and_an_invalid_row_are_shown_from_the_statistics(
    page: Any, server: RunningServer, made: dict[str, Any]
) -> None:
    ds = made["reviews"]
    review = ds["statistics"]["attributes"]["review"]
    amount = ds["statistics"]["attributes"]["amount"]
    assert review["type"] == "TEXT" and amount["type"] == "NUMERIC"
    page.goto(f"{server.url}/console/datasources/{ds['id']}")
    assert bars(chart(page, "review", "top-words")) == [(t["token"], t["count"]) for t in review["top_tokens"]]
    card = page.locator("section.attribute[data-attribute='review']")
    expect(card).to_contain_text(f"{review['length_min']} to {review['length_max']}")
    expect(page.locator("table.schema tr[data-attribute='review'] [data-why]")).to_contain_text(
        f"{review['vocabulary']} distinct words"
    )
    [example] = ds["statistics"]["invalid_rows"]["examples"]["by_column"]["amount"]
    assert example["line"] == made["invalid_line"]
    shown = page.locator("table.invalid tr[data-column='amount'] li[data-line]")
    expect(shown).to_have_attribute("data-line", str(made["invalid_line"]))
    expect(shown).to_have_text(f"line {made['invalid_line']}: abc")
    expect(page.locator("#invalid")).to_contain_text("1 row left out")
    # The blank cell is missing, not invalid.
    cells = page.locator("table.schema tr[data-attribute='amount'] td.num")
    expect(cells.nth(0)).to_have_text(str(amount["missing"]))
    expect(cells.nth(1)).to_have_text(str(amount["invalid"]))
    assert (amount["missing"], amount["invalid"]) == (1, 1)


def test_the_list_pages_by_the_apis_next_token_and_filters_by_status(
    page: Any, server: RunningServer, api: httpx.Client, made: dict[str, Any]
) -> None:
    first = api.get("/v1/datasources", params={"name_prefix": PREFIX, "limit": 1}).json()
    assert first["next_token"]
    page.goto(f"{server.url}/console/datasources?name_prefix={PREFIX}&limit=1")
    rows = page.locator("table.datasources tbody tr")
    expect(rows).to_have_count(1)
    [item] = first["items"]
    row = rows.first
    assert row.get_attribute("data-id") == item["id"]
    expect(row.locator(".status")).to_have_text("COMPLETED")
    expect(row.locator("progress")).to_have_attribute("value", "1.0")
    expect(row.locator("[data-percent]")).to_have_text("100 %")
    expect(row.locator("[data-rows]")).to_have_text(f"{item['row_count']:,}")
    page.get_by_role("link", name="Next page →").click()
    second = api.get("/v1/datasources", params={"name_prefix": PREFIX, "limit": 1, "next_token": first["next_token"]})
    [item] = second.json()["items"]
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-id") == item["id"]
    expect(page.get_by_role("link", name="Next page →")).to_have_count(1 if second.json()["next_token"] else 0)
    expect(page.get_by_role("link", name="← First page")).to_have_count(1)
    # The status filter, as a person uses it.
    page.goto(f"{server.url}/console/datasources?name_prefix={PREFIX}")
    page.select_option("#status", "FAILED")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#datasources-list")).to_contain_text("No datasource matches these filters")
    page.select_option("#status", "COMPLETED")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    bad = page.goto(f"{server.url}/console/datasources?status=bogus")
    assert bad is not None and bad.status == 400
    expect(page.locator("[role=alert]")).to_contain_text("is not one of")


def counts_from_api(api: httpx.Client) -> dict[str, dict[str, tuple[int, bool]]]:
    found: dict[str, dict[str, tuple[int, bool]]] = {}
    for kind in KINDS:
        for status in STATUSES:
            body = api.get(f"/v1/{kind}", params={"status": status, "limit": COUNT_CAP}).json()
            found.setdefault(kind, {})[status] = (len(body["items"]), body["next_token"] is not None)
    return found


def test_the_overview_counts_every_resource_by_status_and_links_the_newest(
    page: Any, server: RunningServer, api: httpx.Client, made: dict[str, Any]
) -> None:
    before = counts_from_api(api)
    newest = [d["id"] for d in api.get("/v1/datasources", params={"limit": 5}).json()["items"]]
    page.goto(f"{server.url}/console")
    after = counts_from_api(api)
    shown = page.locator("[data-kind] [data-status]").evaluate_all(
        "cells => cells.map(c => [c.closest('[data-kind]').dataset.kind, c.dataset.status, +c.dataset.count,"
        " c.dataset.more === '1'])"
    )
    counts: dict[str, dict[str, tuple[int, bool]]] = {}
    for kind, status, count, more in shown:
        counts.setdefault(kind, {})[status] = (count, more)
    assert counts in (before, after)  # a job elsewhere may finish in between; either moment is right
    assert counts["datasources"]["COMPLETED"][0] >= 2
    recent = page.locator("[data-kind='datasources'] .recent li")
    assert recent.evaluate_all("items => items.map(i => i.dataset.id)") == newest
    recent.first.get_by_role("link").click()
    page.wait_for_url(f"{server.url}/console/datasources/{newest[0]}")
    expect(page.locator("#ds-page")).to_have_attribute("data-status", "COMPLETED")


def test_the_list_and_the_page_follow_a_running_job(
    page: Any, idle_server: RunningServer, idle_api: httpx.Client
) -> None:
    created = idle_api.post("/v1/datasources", json={"data_uri": str(CHURN), "name": PREFIX + "live"}).json()
    url = f"{idle_server.url}/console/datasources"
    page.goto(f"{url}?name_prefix={PREFIX}live")
    row = page.locator(f"tr[data-id='{created['id']}']")
    expect(row.locator(".status")).to_have_text("PENDING")
    expect(row.locator("progress")).to_have_attribute("value", "0.0")
    expect(page.locator("#datasources-list")).to_have_attribute("data-live", "1")
    detail = page.context.new_page()
    detail.goto(f"{url}/{created['id']}")
    expect(detail.locator("#ds-page")).to_have_attribute("data-live", "1")
    expect(detail.locator("section.attribute")).to_have_count(0)
    try:
        [done] = run_jobs(idle_server, f"/v1/datasources/{created['id']}")
        assert done["status"] == "COMPLETED", done["message"]
        # Neither page is reloaded: their live parts follow the job to its end, then stop.
        expect(row.locator(".status")).to_have_text("COMPLETED", timeout=20_000)
        expect(row.locator("[data-rows]")).to_have_text(f"{done['row_count']:,}")
        expect(page.locator("#datasources-list")).to_have_attribute("data-live", "0")
        expect(detail.locator("#ds-page")).to_have_attribute("data-live", "0", timeout=20_000)
        expect(detail.locator("section.attribute")).to_have_count(len(done["schema"]["attributes"]))
    finally:
        idle_api.delete(f"/v1/datasources/{created['id']}")


def test_an_unknown_datasource_is_a_404_page(page: Any, server: RunningServer) -> None:
    response = page.goto(f"{server.url}/console/datasources/no-such-datasource")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("[role=alert]")).to_contain_text("no-such-datasource")
    expect(page.get_by_role("link", name="Back to the datasources")).to_have_attribute("href", "/console/datasources")


def test_the_pages_fit_a_phone(page: Any, server: RunningServer, made: dict[str, Any]) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    for path in (
        "/console",
        f"/console/datasources?name_prefix={PREFIX}",
        f"/console/datasources/{made['churn']['id']}",
        f"/console/datasources/{made['reviews']['id']}",
    ):
        page.goto(server.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_a_keyboard_user_tabs_to_a_datasource_and_opens_it(
    page: Any, server: RunningServer, made: dict[str, Any]
) -> None:
    page.goto(f"{server.url}/console/datasources?name_prefix={PREFIX}")
    target = page.locator("table.datasources tbody a").first.get_attribute("href")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('table.datasources tbody a')"):
            break
    else:
        pytest.fail("no datasource link took the focus within 30 presses of Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == target
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # the focus shows
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}{target}")
    expect(page.locator("#schema")).to_be_visible()
