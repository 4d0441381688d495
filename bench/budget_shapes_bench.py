"""Benchmark: does a model job keep its time budget on wide and on tall data? The real ``mlsvc serve`` trains a
10,000-column × 20-row table and a 1,000,000-row × 10-column table at budgets of 10 and 30 s; the figure is the
model job's wall time (the resource's ``created_at`` to its ``updated_at`` when COMPLETED) over its budget.

Run by hand, not in CI:

    .venv/bin/python bench/budget_shapes_bench.py                                 # both shapes x 10 / 30 s
    .venv/bin/python bench/budget_shapes_bench.py --shapes wide --budgets 10      # one run

What it does:

- Writes the two CSVs into a temporary folder (seeded, so every run trains on the same data):
  - ``wide``: 20 rows of 10,000 NUMERIC columns (normal noise, 3 decimals) and a ``label`` yes / no that follows
    the first column;
  - ``tall``: 1,000,000 rows of 8 NUMERIC columns, a CATEGORICAL ``cat`` of 8 levels and a ``label`` yes / no
    from a noisy linear rule over x0, x1 and cat.
- Starts ``python -m mlsvc.cli serve`` with its own MLSVC_HOME, a free port and MLSVC_WORKERS=1 (one job at a
  time, as in the issue, where one slow model held the only worker), MLSVC_LOCAL_ROOTS = the temporary folder.
- Through REST: one datasource per shape (``target`` = label), waited for; its job's wall time is printed too,
  since reading and describing a 10,000-column file is a job of its own. Then, for each budget, one model
  ``{"name": "<shape>-<budget>", "time_budget_s": B}``, created and waited for one at a time, so no job waits in
  the queue behind another.
- Per model: wall = ``updated_at - created_at`` of the COMPLETED resource (what a user waits, claim and imports
  included), the ratio wall / budget, the excess over 1.1 × budget (the allowance the job needed), the phases
  the job timed itself (``metrics.timings_s``: load, search with the refit, evaluation, importances, registration),
  and its message, which names what was sampled or skipped.
- The first model job of the worker process also pays the imports of scikit-learn and MLflow (several seconds);
  ``--warm-up`` trains a small model first so that every measured job runs on a warm worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench's own helpers, beside this file.
from http_predict_bench import free_port, start, stop

BAR = 1.10
WIDE_COLUMNS, WIDE_ROWS = 10_000, 20
TALL_ROWS = 1_000_000


@dataclass
class Run:
    """One model job, as its resource tells it."""

    shape: str
    budget: float
    wall: float
    status: str
    message: str
    timings: dict[str, float]
    selected: str

    @property
    def ratio(self) -> float:
        return self.wall / self.budget

    @property
    def excess(self) -> float:
        return self.wall - BAR * self.budget


def write_wide(path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(WIDE_ROWS, WIDE_COLUMNS)).round(3)
    label = np.where(values[:, 0] + rng.normal(scale=0.5, size=WIDE_ROWS) > 0, "yes", "no")
    frame = pd.DataFrame(values, columns=[f"c{i}" for i in range(WIDE_COLUMNS)])
    frame["label"] = label
    frame.to_csv(path, index=False)


def write_tall(path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=TALL_ROWS).round(3) for i in range(8)})
    frame["cat"] = rng.choice(list("abcdefgh"), size=TALL_ROWS)
    logit = frame["x0"] + 0.5 * frame["x1"] + (frame["cat"] == "a") + rng.normal(size=TALL_ROWS)
    frame["label"] = np.where(logit > 0, "yes", "no")
    frame.to_csv(path, index=False)


WRITERS = {"wide": write_wide, "tall": write_tall}


def wait(client: Any, path: str, timeout_s: float) -> dict[str, Any]:
    """The resource at ``path`` once its job ended (COMPLETED or FAILED)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resource: dict[str, Any] = client.get(path).json()
        if resource["status"] in ("COMPLETED", "FAILED"):
            return resource
        time.sleep(0.2)
    raise RuntimeError(f"{path} did not finish within {timeout_s:.0f} s")


def job_wall(resource: dict[str, Any]) -> float:
    """Seconds from the resource's creation to its last update (its job's end, for a finished resource)."""
    created = datetime.fromisoformat(resource["created_at"])
    return (datetime.fromisoformat(resource["updated_at"]) - created).total_seconds()


def datasource(client: Any, path: Path, timeout_s: float) -> dict[str, Any]:
    created = client.post("/v1/datasources", json={"data_uri": str(path), "target": "label"})
    created.raise_for_status()
    done = wait(client, f"/v1/datasources/{created.json()['id']}", timeout_s)
    if done["status"] != "COMPLETED":
        raise RuntimeError(f"datasource {path.name} FAILED: {done['message']}")
    return done


def train(client: Any, shape: str, ds_id: str, budget: float, timeout_s: float) -> Run:
    body = {"name": f"{shape}-{budget:g}", "datasource_id": ds_id, "time_budget_s": budget}
    created = client.post("/v1/models", json=body)
    created.raise_for_status()
    done = wait(client, f"/v1/models/{created.json()['id']}", timeout_s)
    metrics = done.get("metrics") or {}
    return Run(
        shape,
        budget,
        job_wall(done),
        done["status"],
        done["message"],
        metrics.get("timings_s") or {},
        str(metrics.get("selected", "")),
    )


def report(runs: list[Run], datasources: dict[str, float]) -> None:
    print()
    for shape, wall in datasources.items():
        print(f"datasource job, {shape}: {wall:.1f} s")
    print()
    print(f"{'shape':5} {'budget':>6} {'wall s':>7} {'ratio':>6} {'excess s':>8}  status     phases (s)")
    for r in runs:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items())
        print(f"{r.shape:5} {r.budget:6g} {r.wall:7.1f} {r.ratio:6.2f} {r.excess:8.1f}  {r.status:9}  {phases}")
    print()
    for r in runs:
        print(f"{r.shape} {r.budget:g} s: selected {r.selected or '-'}; message: {r.message or '(none)'}")
    worst = max(runs, key=lambda r: r.excess)
    print(
        f"\nworst: {worst.shape} at {worst.budget:g} s, wall {worst.wall:.1f} s = {worst.ratio:.2f} x budget; "
        f"the allowance it needed over {BAR} x budget: {max(0.0, worst.excess):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(WRITERS), default=["wide", "tall"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[10.0, 30.0])
    parser.add_argument("--warm-up", action="store_true", help="train a small model first, unmeasured")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for any one job")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary folder and the server log")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="mlsvc-budget-shapes-"))
    home = folder / "home"
    home.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "MLSVC_HOME": str(home),
        "MLSVC_PORT": str(port),
        "MLSVC_WORKERS": "1",
        "MLSVC_LOCAL_ROOTS": str(folder),
    }
    for shape in args.shapes:
        started = time.perf_counter()
        WRITERS[shape](folder / f"{shape}.csv")
        print(f"wrote {shape}.csv in {time.perf_counter() - started:.1f} s", flush=True)
    server = start("mlsvc", [sys.executable, "-m", "mlsvc.cli", "serve"], env, port, "", "/healthz", home, 120)
    import httpx

    runs: list[Run] = []
    walls: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            if args.warm_up:
                warm_up(client, folder, args.timeout)
            for shape in args.shapes:
                ds = datasource(client, folder / f"{shape}.csv", args.timeout)
                walls[shape] = job_wall(ds)
                print(f"datasource {shape}: {walls[shape]:.1f} s", flush=True)
                for budget in args.budgets:
                    run = train(client, shape, ds["id"], budget, args.timeout)
                    runs.append(run)
                    print(f"model {shape} {budget:g} s: {run.status}, wall {run.wall:.1f} s", flush=True)
    finally:
        stop(server)
        if args.keep_home:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    report(runs, walls)


def warm_up(client: Any, folder: Path, timeout_s: float) -> None:
    """A small model, so that the measured jobs find scikit-learn and MLflow imported in the worker."""
    path = folder / "warm.csv"
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["label"] = np.where(frame["x"] > 0, "yes", "no")
    frame.to_csv(path, index=False)
    ds = datasource(client, path, timeout_s)
    train(client, "warm", ds["id"], 2.0, timeout_s)


if __name__ == "__main__":
    main()
