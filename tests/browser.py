"""Pytest plugin: headless Debian chromium driven by Playwright (no browser download), a page per test whose every
request is recorded, and the check that none of them left the machine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """The browser, once per module (`make test` installs Debian's chromium when it is missing). Not once per
    session: Playwright's sync API holds an event loop on this thread while it runs, and the SDK's async tests
    need the thread's loop free."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses its sandbox to root
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object) -> Iterator[object]:
    """A fresh page (its own cookies) at a laptop's size; the hosts it asked for are checked when it closes."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.requested = requested  # what a test may look at too
    yield page
    context.close()
    outside = [url for url in requested if urlsplit(url).hostname not in LOCAL_HOSTS and not url.startswith("data:")]
    assert outside == [], f"the console asked another host for {outside}"
