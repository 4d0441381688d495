"""Chaos: SIGKILL job workers again and again while a mix of datasource, training and batch jobs runs, then count
what a user would call damage. Every count in the last table must be 0.

Run by hand, not in CI:

    .venv/bin/python bench/chaos.py                 # 20 kills, 3 datasources, 3 models, 4 batch predictions
    .venv/bin/python bench/chaos.py --kills 5       # a quick look

What it does:

- Starts ``mlsvc serve`` (MLSVC_WORKERS=2, a 4 s lease, 6 attempts a job) on a fresh MLSVC_HOME, with its data
  and outputs in a folder of their own.
- Submits datasources (churn and fraud), models on them (small budgets) and batch predictions of each model over
  its datasource, through REST, as soon as what they need is COMPLETED.
- Meanwhile kills a worker process with SIGKILL every ``--every-s`` seconds (a random one of the server's live
  workers; `mlsvc serve` starts a new one), ``--kills`` times.
- Waits for every resource to end (COMPLETED or FAILED), at most ``--settle-s`` seconds after the last kill.
- Counts: jobs lost (a resource left PENDING or INPROGRESS whose job will never run again: none, or ended),
  stuck (still PENDING / INPROGRESS at the end), partial outputs (a batch output without its manifest, a
  manifest naming a file that is not there or whose row count differs from the resource's, ``.tmp`` files or
  staging folders left under an output), and
  resources FAILED (with their messages: a job that used all its attempts fails with a message, which is not
  damage, but is listed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench's own helpers, beside this file.
from http_predict_bench import ROOT, free_port, start, stop

EXAMPLES = {"churn": ("churn.csv", "churned"), "fraud": ("fraud.csv.gz", "is_fraud")}


def workers_of(pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(pid).children() if "spawn" in " ".join(p.cmdline())]


def run(args: argparse.Namespace) -> None:
    import httpx

    folder = Path(tempfile.mkdtemp(prefix="mlsvc-chaos-"))
    port = free_port()
    env = {
        **os.environ,
        "MLSVC_HOME": str(folder / "home"),
        "MLSVC_PORT": str(port),
        "MLSVC_WORKERS": "2",
        "MLSVC_JOB_LEASE_S": "4",
        "MLSVC_JOB_MAX_ATTEMPTS": "6",
        "MLSVC_LOCAL_ROOTS": f"{ROOT}{os.pathsep}{folder}",
    }
    server = start("chaos", [sys.executable, "-m", "mlsvc.cli", "serve"], env, port, "/v1/models", "/healthz", folder)
    rng = random.Random(args.seed)
    created: list[tuple[str, str]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            plan = _Plan(api, folder, args, created)
            kills = 0
            next_kill = time.monotonic() + args.every_s
            deadline = None
            while True:
                plan.advance()
                if kills < args.kills and time.monotonic() >= next_kill:
                    live = workers_of(server.process.pid)
                    if live:
                        os.kill(rng.choice(live), signal.SIGKILL)
                        kills += 1
                        print(f"kill {kills}/{args.kills}", flush=True)
                    next_kill = time.monotonic() + args.every_s
                if kills >= args.kills and deadline is None:
                    deadline = time.monotonic() + args.settle_s
                if deadline is not None and (plan.done() or time.monotonic() > deadline):
                    break
                time.sleep(0.5)
            report(api, created, folder, kills)
    finally:
        stop(server)
    print(f"\nfolder: {folder}")


class _Plan:
    """Creates the mix step by step, each resource once what it reads is COMPLETED."""

    def __init__(self, api: Any, folder: Path, args: argparse.Namespace, created: list[tuple[str, str]]) -> None:
        self.api, self.folder, self.args, self.created = api, folder, args, created
        self.datasources: dict[str, str] = {}
        self.models: dict[str, str] = {}
        self.batches = 0
        for i in range(args.datasources):
            name = list(EXAMPLES)[i % len(EXAMPLES)]
            data, target = EXAMPLES[name]
            body = {"name": f"{name}-{i}", "data_uri": str(ROOT / "datasources" / data), "target": target}
            self.datasources[self._create("/v1/datasources", body)] = name

    def _create(self, path: str, body: dict[str, Any]) -> str:
        answer = self.api.post(path, json=body)
        answer.raise_for_status()
        rid = answer.json()["id"]
        self.created.append((path, rid))
        return rid

    def _status(self, path: str, rid: str) -> str:
        return str(self.api.get(f"{path}/{rid}").json()["status"])

    def advance(self) -> None:
        ready_ds = [d for d in self.datasources if self._status("/v1/datasources", d) == "COMPLETED"]
        for ds in ready_ds:
            if len(self.models) < self.args.models and ds not in self.models.values():
                body = {"name": f"chaos-{self.datasources[ds]}", "datasource_id": ds, "time_budget_s": 4}
                self.models[self._create("/v1/models", body)] = ds
        for model, ds in list(self.models.items()):
            if self.batches < self.args.batches and self._status("/v1/models", model) == "COMPLETED":
                out = self.folder / "out" / f"batch-{self.batches}"
                self._create("/v1/batch-predictions", {"model": model, "datasource_id": ds, "output_uri": str(out)})
                self.batches += 1

    def done(self) -> bool:
        enough = len(self.models) >= self.args.models and self.batches >= self.args.batches
        return enough and all(self._status(p, r) in ("COMPLETED", "FAILED") for p, r in self.created)


def report(api: Any, created: list[tuple[str, str]], folder: Path, kills: int) -> None:
    resources = [api.get(f"{path}/{rid}").json() for path, rid in created]
    stuck = [r for r in resources if r["status"] in ("PENDING", "INPROGRESS")]
    failed = [r for r in resources if r["status"] == "FAILED"]
    partial = [p for r in resources if r["status"] == "COMPLETED" and "manifest_uri" in r for p in _partial(r)]
    partial += [str(p) for p in (folder / "out").rglob("*") if p.name.endswith(".tmp") or p.name == ".staging"]
    lost = [r for r in resources if r["status"] in ("PENDING", "INPROGRESS") and not _job_alive(folder, r["id"])]
    print(f"\n{len(resources)} resources, {kills} worker SIGKILLs")
    print(f"{'jobs lost':<18}{len(lost)}")
    print(f"{'jobs stuck':<18}{len(stuck)}")
    print(f"{'partial outputs':<18}{len(partial)}")
    print(f"{'FAILED':<18}{len(failed)}  " + "; ".join(f"{r['id']}: {r['message'][:120]}" for r in failed))
    for item in partial:
        print(f"  partial: {item}")
    for r in stuck:
        print(f"  stuck: {r['id']} {r['status']} {r.get('message', '')[:120]}")


def _job_alive(folder: Path, resource_id: str) -> bool:
    """Whether the resource still has a job that will run (queued, or running under a lease)."""
    from mlsvc.metadata.queue import SqlJobQueue
    from mlsvc.metadata.sql import SqlMetadataStore

    store = SqlMetadataStore(f"sqlite:///{folder / 'home' / 'mlsvc.db'}", run_migrations=False)
    try:
        job = SqlJobQueue(store, 4).job_of(resource_id)
    finally:
        store.dispose()
    return job is not None and job["state"] in ("QUEUED", "RUNNING")


def _partial(batch: dict[str, Any]) -> list[str]:
    """What is wrong with a COMPLETED batch prediction's published output, if anything."""
    manifest = Path(batch["manifest_uri"])
    if not manifest.exists():
        return [f"{batch['id']}: no manifest at {manifest}"]
    listed = json.loads(manifest.read_text())
    problems = [f"{batch['id']}: {out} is missing" for out in listed.values() if not Path(out).exists()]
    rows = sum(_rows(Path(out)) for out in listed.values() if Path(out).exists())
    if not problems and rows != batch["rows_scored"]:
        problems.append(f"{batch['id']}: {rows} rows in its files, {batch['rows_scored']} on the resource")
    return problems


def _rows(path: Path) -> int:
    with gzip.open(path, "rt") as f:
        return sum(1 for _ in f) - 1  # less the header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--every-s", type=float, default=4.0)
    parser.add_argument("--settle-s", type=float, default=300.0)
    parser.add_argument("--datasources", type=int, default=3)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
