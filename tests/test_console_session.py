"""The console with an API key set, in a real browser: sign-in is required, the session is an HTTP-only cookie that
is not the key, the REST API takes that cookie for reads and refuses a change without the page's CSRF token, and
the console's files stay within their size budget and name no other host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import RunningServer, start_server, stop_server

KEY = "console-test-key-1234"
STATIC = Path(__file__).resolve().parent.parent / "mlsvc" / "server" / "console"
BUDGET_BYTES = 64 * 1024  # every script, style and icon the console ships, together


@pytest.fixture(scope="module")
def keyed(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("keyed-home"), {"MLSVC_API_KEY": KEY}, workers=0)
    yield server
    stop_server(server)


def test_the_console_asks_to_sign_in_and_keeps_only_a_session_cookie(keyed: RunningServer, page: Any) -> None:
    page.goto(f"{keyed.url}/console/datasources")
    assert page.url.startswith(f"{keyed.url}/console/login?next=")
    page.fill("#key", "wrong")
    page.press("#key", "Enter")
    assert page.locator("[role=alert]").inner_text() == "That key is not this service's key."
    page.fill("#key", KEY)
    page.press("#key", "Enter")
    page.wait_for_url(f"{keyed.url}/console/datasources")
    [cookie] = page.context.cookies()
    assert cookie["name"] == "mlsvc_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert KEY not in cookie["value"]
    # Scripts on the page cannot read the session.
    assert "mlsvc_session" not in page.evaluate("document.cookie")


def test_the_api_takes_the_session_for_reads_and_wants_the_csrf_token_for_changes(
    keyed: RunningServer, page: Any
) -> None:
    page.goto(f"{keyed.url}/console/login")
    page.fill("#key", KEY)
    page.press("#key", "Enter")
    page.wait_for_url(re.compile(r".*/console$"))  # the overview
    read = page.evaluate("fetch('/v1/datasources').then(r => r.status)")
    assert read == 200
    body = '{"data_uri": "datasources/churn.csv"}'
    forged = page.evaluate(
        f"fetch('/v1/datasources', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: '{body}'}})"
        ".then(r => r.json())"
    )
    assert forged["error"]["code"] == "unauthenticated" and "X-CSRF-Token" in forged["error"]["message"]
    made = page.evaluate(f"window.mlsvcApi('POST', '/v1/datasources', {body})")
    assert made["status"] == "PENDING"
    # Without the browser's cookie, the API still wants the key.
    assert httpx.get(f"{keyed.url}/v1/datasources").status_code == 401
    # Signing out ends the session: the pages ask to sign in again.
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/console/login"))
    page.goto(f"{keyed.url}/console/models")
    assert "/console/login" in page.url


def test_a_sign_in_never_redirects_to_another_site(keyed: RunningServer) -> None:
    answer = httpx.post(
        f"{keyed.url}/console/login", data={"key": KEY, "next": "https://elsewhere.example/"}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console"


def test_the_console_ships_its_files_within_budget_and_names_no_other_host() -> None:
    shipped = [p for p in (STATIC / "static").iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in shipped) <= BUDGET_BYTES, {p.name: p.stat().st_size for p in shipped}
    for path in [*shipped, *(STATIC / "templates").iterdir()]:
        text = path.read_text()
        assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?(?:https?:)?//", text), path.name
