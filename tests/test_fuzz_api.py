"""api/openapi.json holds against the service: schemathesis, with every check, on the real app with real resources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from fastapi import FastAPI

from mlsvc.jobs.worker import Worker
from mlsvc.server.app import create_app
from tests.inprocess import serving, settings_for
from tests.servers import CHURN, REPO

# The CLI, in a subprocess, beside this interpreter: it runs as `make fuzz` runs it, and schemathesis's pytest
# integration is reported broken with pytest 9, the suite's.
ST = Path(sys.executable).parent / "st"

# Every check but one: a delete is soft (the resource stays readable as DELETED), which use_after_free takes for a
# resource that failed to go; schemathesis.toml says so too, but `--checks all` would override it there.
CHECKS = ("--checks", "all", "--exclude-checks", "use_after_free")
# The suite's run: every phase but stateful (the longest), a few examples per operation, a fixed seed.
QUICK = ("--phases", "examples,coverage,fuzzing", "--max-examples", "5")
# `make fuzz`: every phase, many more examples.
LONG = ("--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "200")


def seed(app: FastAPI, api: httpx.Client, data: Path) -> None:
    """Resources for the fuzzer to reach (schemathesis.toml names them): a COMPLETED datasource, a COMPLETED model
    with an alias and the holdout evaluation its training made, a COMPLETED batch prediction, and a PENDING
    datasource; their jobs run here, before the fuzzing starts."""
    pd.read_csv(CHURN, nrows=200).to_csv(data / "churn.csv", index=False)
    _create(api, "/v1/datasources", {"id": "churn", "data_uri": str(data / "churn.csv"), "target": "churned"})
    _run_jobs(app)
    _create(api, "/v1/models", {"id": "m-churn", "name": "churn", "datasource_id": "churn", "time_budget_s": 1})
    _run_jobs(app)
    batch = {"id": "scored", "model": "churn", "datasource_id": "churn", "output_uri": f"{data / 'scored'}/"}
    _create(api, "/v1/batch-predictions", batch)
    _run_jobs(app)
    for path in ("/v1/models/m-churn", "/v1/evaluations/ev-m-churn-holdout", "/v1/batch-predictions/scored"):
        resource = api.get(path).json()
        assert resource["status"] == "COMPLETED", resource
    aliased = api.put("/v1/models/churn/aliases/staging", json={"version": 1})
    assert aliased.status_code == 200, aliased.text
    _create(api, "/v1/datasources", {"id": "later", "data_uri": str(data / "churn.csv")})


def _create(api: httpx.Client, path: str, body: dict[str, Any]) -> None:
    made = api.post(path, json=body)
    assert made.status_code == 202, made.text


def _run_jobs(app: FastAPI) -> None:
    """Every queued job, one after another, in this process."""
    worker = Worker(app.state.service.settings, app.state.service.planes.metadata)
    while worker.run_once():
        pass


@contextmanager
def seeded_service(folder: Path) -> Iterator[str]:
    """The real app on a loopback port, its home and data under ``folder`` and only ``folder/data`` readable."""
    data = folder / "data"
    data.mkdir()
    app = create_app(settings_for(folder / "home", local_roots=(data.resolve(),)))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=120) as api:
            seed(app, api, data)
            yield url
    finally:
        app.state.service.close()


def schemathesis(
    url: str, options: Sequence[str], scratch: Path, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """`st run` with every check on the served description (schemathesis.toml at the repo root configures it)."""
    command = [str(ST), "run", f"{url}/openapi.json", *CHECKS, "--workers", "1", *options]
    # Hypothesis keeps its caches in the working directory unless told otherwise: in scratch, not the work tree.
    env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(scratch / "hypothesis")}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=capture, text=True, timeout=1800)


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    with seeded_service(tmp_path) as url:
        result = schemathesis(url, (*QUICK, "--seed", "1"), tmp_path)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def answers_by_class(har: Path) -> Counter[str]:
    """How many answers of each status class (2xx, 4xx, 5xx, ...) a run's HAR report holds."""
    entries = json.loads(har.read_text())["log"]["entries"]
    return Counter(f"{entry['response']['status'] // 100}xx" for entry in entries)


def fuzz(extra: Sequence[str]) -> int:
    """`make fuzz`: the long run, its answers counted by status class afterwards; schemathesis's exit code."""
    with tempfile.TemporaryDirectory() as scratch, seeded_service(Path(scratch)) as served:
        har = Path(scratch) / "fuzz.har"
        started = time.monotonic()
        report = ("--report", "har", "--report-har-path", str(har))
        outcome = schemathesis(served, (*LONG, *report, *extra), Path(scratch), capture=False)
        elapsed = time.monotonic() - started
        counts = answers_by_class(har) if har.exists() else Counter()
    figures = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"schemathesis exited {outcome.returncode} after {elapsed:.0f} s; answers: {figures or 'none recorded'}")
    return outcome.returncode


if __name__ == "__main__":
    sys.exit(fuzz(sys.argv[1:]))
