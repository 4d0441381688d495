"""Screenshots of the console's main pages for the README, taken on a store the script fills with real work.

    .venv/bin/python docs/console/make_screenshots.py        # writes docs/console/*.png

It starts `mlsvc serve` on a temporary home with the examples (short budgets), waits for their models, and opens
each page in headless Debian chromium (Playwright; `make test` installs chromium)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, names: list[str], timeout_s: float = 600) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict] = {}
    while time.monotonic() < deadline and len(done) < len(names):
        for name in names:
            answer = httpx.get(f"{url}/v1/models/example-{name}-v1")
            if answer.status_code == 200 and answer.json()["status"] in ("COMPLETED", "FAILED"):
                done[name] = answer.json()
        time.sleep(1)
    return done


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="mlsvc-shots-"))
    port = _free_port()
    env = {
        **os.environ,
        "MLSVC_HOME": str(home),
        "MLSVC_PORT": str(port),
        "MLSVC_EXAMPLES": "1",
        "MLSVC_EXAMPLES_BUDGET_S": "10",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mlsvc.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        models = _wait(url, ["churn", "fraud", "recommendation"])
        churn = models["churn"]
        pages = {
            "home": "/console",
            "datasources": "/console/datasources",
            "datasource": "/console/datasources/example-churn",
            "models": "/console/models",
            "model": f"/console/models/{churn['id']}",
            "evaluation": f"/console/evaluations/{churn['evaluation_id']}",
            "recommendation": f"/console/models/{models['recommendation']['id']}",
            "new": "/console/new",
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, path in pages.items():
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
                print(f"wrote docs/console/{name}.png")
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(f"{url}/console/models/{churn['id']}")
            phone.screenshot(path=str(HERE / "model-phone.png"), full_page=False)
            print("wrote docs/console/model-phone.png")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
