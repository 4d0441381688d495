"""Benchmark: mlsvc's heavy work on a Dask cluster of 1, 2 and 4 worker processes against the local path, on this
machine. Figures, not test assertions.

Run by hand, not in CI:

    .venv/bin/python bench/dask_bench.py                                   # 10 M rows from S3, training at 30 s
    .venv/bin/python bench/dask_bench.py --rows 1000000 --workers 1 2 --budget 10   # a quick look

What it does:

- The input is batch_bench's: ``datasources/churn.csv`` without its target, repeated to ``--rows`` rows, kept in
  ``--cache``, uploaded to moto's S3 server on loopback (a process of its own).
- One MLSVC_HOME for every run, so every server serves the same registered models. First ``mlsvc serve`` without
  Dask (one job worker, MLSVC_BATCH_PROCESSES at its default): it trains the ``linear`` model of batch_bench
  through REST, scores the S3 input into S3 (the local path), and trains a model with the default search at
  ``--budget`` seconds (seed 0) on the churn datasource. Then, for each ``--workers`` count N: a ``dask scheduler``
  and N ``dask worker`` processes of one thread each (``--no-nanny``), with the server's environment; ``mlsvc
  serve`` with MLSVC_DASK_SCHEDULER set (parts of ``--partition-mib``); the same batch, and the same training.
- Per run, after a batch of one 10,000-row file per Dask worker that loads the model where it is scored (each
  Dask worker's first job loads it from the registry): the batch job's seconds from POST to COMPLETED and rows/s,
  the parts it was cut into (from the server's log), the CPU seconds of the run's processes (the server, the Dask
  scheduler and workers, read from /proc before and after), and the cores that keeps busy on average; for
  training, the candidates the search validated, its validation score and the holdout AUC.
- Prints one table. Cores: this machine has ``os.cpu_count()``; every process shares them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_bench import (
    S3,
    BuiltModel,
    Outputs,
    build_models,
    clean_env,
    input_csv,
    run_job,
    start_s3,
    stop_process,
    upload,
)
from http_predict_bench import Target, free_port, start, stop

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARM_ROWS = 10_000


@dataclass
class Run:
    name: str
    batch_s: float
    rows: int
    parts: int | None
    cpu_s: float
    train_s: float
    candidates: int
    validation: float
    auc: float | None


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, children waited for included) of the processes and their descendants."""
    total = 0.0
    stack = list(pids)
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / CLK_TCK
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                stack.extend(int(c) for c in children.read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Cluster:
    """A Dask scheduler and ``n`` single-threaded worker processes with the mlsvc server's environment."""

    def __init__(self, n: int, env: dict[str, str], logs: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.log = logs / f"dask-{n}.log"
        scheduler = ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
        worker = ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        self.processes = [self._start(scheduler, env)] + [self._start(worker, env) for _ in range(n)]
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=120)

    def _start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", *args], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


def warm_prefix(s3: S3, path: Path, copies: int) -> str:
    """``copies`` copies of the small input under one prefix: a batch of as many parts, one on each Dask worker."""
    client = s3.client()
    for i in range(copies):
        client.upload_file(str(path), "mlsvc-batch-bench", f"warm/part-{i}.csv")
    return "s3://mlsvc-batch-bench/warm/"


def server_env(home: Path, s3: S3, extra: dict[str, str]) -> dict[str, str]:
    return {
        **clean_env(),
        **s3.env,
        "MLSVC_HOME": str(home),
        "MLSVC_WORKERS": "1",
        "MLSVC_LOCAL_ROOTS": "/",
        **extra,
    }


def serve(home: Path, env: dict[str, str], name: str) -> Target:
    port = free_port()
    return start(
        name, [sys.executable, "-m", "mlsvc.cli", "serve"], {**env, "MLSVC_PORT": str(port)}, port, "", "/healthz", home
    )


def completed(api: httpx.Client, path: str, body: dict[str, Any], timeout_s: float = 1800) -> dict[str, Any]:
    created = api.post(path, json=body)
    if created.status_code >= 400:
        raise RuntimeError(f"POST {path}: {created.status_code} {created.text}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resource = api.get(f"{path}/{created.json()['id']}").json()
        if resource["status"] == "COMPLETED":
            return dict(resource)
        if resource["status"] == "FAILED":
            raise RuntimeError(f"{path} FAILED: {resource['message']}")
        time.sleep(0.2)
    raise RuntimeError(f"{path} did not complete within {timeout_s} s")


@dataclass(frozen=True)
class Workload:
    """What every run does: the same batch (after the same warm-up batch) and the same training."""

    model: BuiltModel
    data_uri: str
    rows: int
    warm_uri: str
    warm_rows: int
    datasource: str
    budget: float
    s3: S3


def measure(name: str, api: httpx.Client, server: Target, pids: list[int], work: Workload) -> Run:
    # A first small batch loads the model where it is scored (on each Dask worker, from the registry): a one-off
    # cost of a worker's first job, not of scoring.
    outputs = Outputs(work.s3)
    run_job(
        api, server, work.model, work.warm_uri, f"s3://mlsvc-batch-bench/warm-{name}/", work.warm_rows, 600, outputs
    )
    local = not work.data_uri.startswith("s3://")
    output_uri = f"{Path(work.data_uri).parent}/out-{name}/" if local else f"s3://mlsvc-batch-bench/out-{name}/"
    before = tree_cpu_s(pids)
    job = run_job(api, server, work.model, work.data_uri, output_uri, work.rows, 3600, outputs)
    cpu = tree_cpu_s(pids) - before
    found = [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if job.resource["id"] in line and "parts on the Dask" in line
    ]
    parts = int(re.search(r" in (\d+) parts", found[0]).group(1)) if found else None  # type: ignore[union-attr]
    started = time.perf_counter()
    trained = completed(
        api, "/v1/models", {"name": f"bench-{name}", "datasource_id": work.datasource, "time_budget_s": work.budget}
    )
    train_s = time.perf_counter() - started
    validated = [
        r for r in trained["leaderboard"] if r.get("validation_score") is not None and r["candidate"] != "ensemble"
    ]
    metrics = trained["metrics"]
    return Run(
        name,
        job.seconds,
        work.rows,
        parts,
        cpu,
        train_s,
        len(validated),
        float(metrics["validation_score"]),
        metrics.get("BinaryAUC"),
    )


def run(args: argparse.Namespace) -> list[Run]:
    scratch = Path(tempfile.mkdtemp(prefix="mlsvc-dask-bench-"))
    home = scratch / "home"
    home.mkdir()
    s3 = start_s3(scratch)
    runs: list[Run] = []
    try:
        s3.client().create_bucket(Bucket="mlsvc-batch-bench")
        data = input_csv(args.cache, args.rows)
        data_uri = upload(s3, data) if args.source == "s3" else str(data)
        warm = warm_prefix(s3, input_csv(args.cache, WARM_ROWS), max(args.workers))
        warm_rows = WARM_ROWS * max(args.workers)
        local = serve(home, server_env(home, s3, {}), "mlsvc-local")
        try:
            with httpx.Client(base_url=local.url, timeout=120) as api:
                model = build_models(api, ["linear"])["linear"]
                datasource = completed(
                    api,
                    "/v1/datasources",
                    {
                        "data_uri": str(Path(__file__).resolve().parents[1] / "datasources" / "churn.csv"),
                        "target": "churned",
                    },
                )["id"]
                work = Workload(model, data_uri, args.rows, warm, warm_rows, datasource, args.budget, s3)
                runs.append(measure("local", api, local, [local.process.pid], work))
        finally:
            stop(local)
        for n in args.workers:
            extra = {"MLSVC_PARTITION_BYTES": str(args.partition_mib * 2**20)}
            env = server_env(home, s3, extra)
            cluster = Cluster(n, env, scratch)
            try:
                server = serve(home, {**env, "MLSVC_DASK_SCHEDULER": cluster.address}, f"mlsvc-dask-{n}")
                try:
                    with httpx.Client(base_url=server.url, timeout=120) as api:
                        pids = [server.process.pid] + [p.pid for p in cluster.processes]
                        runs.append(measure(f"dask-{n}", api, server, pids, work))
                finally:
                    stop(server)
            finally:
                cluster.stop()
            print(f"done: {runs[-1]}", file=sys.stderr)
    finally:
        stop_process(s3.process)
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    where = "loopback S3 to S3" if args.source == "s3" else "a local file to local files"
    print(
        f"\n{args.rows:,} rows from {where}; training: the default search at {args.budget:.0f} s on churn; "
        f"{cores} cores shared by every process\n"
    )
    columns = ["run", "batch s", "rows/s", "parts", "CPU s", "cores busy", "train s", "candidates validated"]
    print("| " + " | ".join([*columns, "validation score", "holdout AUC"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        auc = f"{r.auc:.4f}" if r.auc is not None else "-"
        print(
            f"| {r.name} | {r.batch_s:.2f} | {r.rows / r.batch_s:,.0f} | {r.parts or 1} | {r.cpu_s:.1f} | "
            f"{r.cpu_s / r.batch_s:.2f} | {r.train_s:.1f} | {r.candidates} | {r.validation:.4f} | {auc} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--source", choices=["s3", "local"], default="s3", help="the input and output: S3 or files")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--budget", type=float, default=30.0, help="the training runs' time budget, seconds")
    parser.add_argument("--partition-mib", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mlsvc-batch-bench"))
    args = parser.parse_args()
    report(run(args), args)


if __name__ == "__main__":
    main()
