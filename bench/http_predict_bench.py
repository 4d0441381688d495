"""Benchmark: one record at a time over HTTP on loopback, the real ``mlsvc serve`` against a hand-written FastAPI +
scikit-learn endpoint, ``mlflow models serve`` of the same model, and an empty FastAPI endpoint (the HTTP floor).

Run by hand, not in CI:

    .venv/bin/python bench/http_predict_bench.py                       # 3 rounds of 3,000 requests per target
    .venv/bin/python bench/http_predict_bench.py --requests 300 --rounds 1 --concurrent-s 2   # a quick look
    .venv/bin/python bench/http_predict_bench.py --model hgb300       # the model: default, linear or hgb300

What it does:

- Starts ``python -m mlsvc.cli serve`` in a subprocess with its own MLSVC_HOME (a temporary folder), a free port
  and MLSVC_WORKERS=1, and waits for /healthz. Creates a datasource on ``datasources/churn.csv`` (its schema file
  beside it) and a model through REST, and waits for COMPLETED: ``--model default`` (the default) is
  ``{"name": "churn", "time_budget_s": 10}``, whatever the search selects; ``linear`` and ``hgb300`` give one
  configuration as ``candidates``: logistic regression, or histogram gradient boosting of 300 trees
  (``max_iter`` 300, ``early_stopping`` off). The model trains on both cores; only then is every thread of the
  server and of its worker process pinned to core 1.
- Starts the baselines, each in its own uvicorn process pinned to core 1 (``taskset -c 1``) on another port:
  - ``hand-written``: a minimal FastAPI app that loads the same fitted pipeline from the model's ``model_uri``
    (``mlflow.sklearn.load_model``, MLFLOW_TRACKING_URI=sqlite:///<home>/mlflow.db) and answers
    ``pipeline.predict_proba(pd.DataFrame([record], columns=...).astype(dtypes))``. The ``astype`` to the training
    dtypes is what such an endpoint needs once a record holds a null (a one-row column of None is ``object``).
  - ``mlflow``: ``mlflow models serve -m <model_uri> --env-manager local``, POST /invocations with
    ``dataframe_records``. Its pyfunc answers ``predict`` (labels): the same preprocessing and trees as
    ``predict_proba``. Skipped with a note if it cannot start here.
  - ``floor``: an empty FastAPI endpoint (``async def``, JSON body in, ``{}`` out).
- The client runs pinned to core 0. Records are rows of churn.csv as JSON (numbers, 0/1 flags, strings, null
  for blanks), bodies encoded once beforehand, sent with one keep-alive ``httpx.Client`` per target.
- Sequential: one request at a time, ``--requests`` per target per round after 100 warm-up requests, ``--rounds``
  rounds, the order of the targets rotated every round. Latency is the client's time around ``post``.
- Concurrent: ``--threads`` client threads (a keep-alive client each) for ``--concurrent-s`` seconds per target per
  round, interleaved the same way; requests/s, plus the CPU the server and the client used (a server near 100 %
  of its core is the bottleneck; a client near 100 % of core 0 means the figure is the client's limit).
- Server CPU is the scheduler's account of every thread of the server and its children (``/proc/…/schedstat``,
  to the nanosecond; psutil's 10 ms ticks where that is missing), read before and after each block.
- Prints medians over rounds of p50, p99, requests/s and server CPU per request per target, the ratios against
  mlsvc, mlsvc's p50 and server CPU per request against the floor's, and the ``/metrics`` lines that show which
  scoring path served the requests.
- Checks before measuring that mlsvc, hand-written and mlflow agree on the same records.

Internal: ``--serve hand-written|floor --port P`` runs one baseline server (the benchmark starts it so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "datasources" / "churn.csv"
SERVER_CORE, CLIENT_CORE = 1, 0
# The model trained on churn.csv (--model): what the default search selects in 10 s, or one configuration.
MODELS: dict[str, dict[str, Any]] = {
    "default": {"time_budget_s": 10},
    "linear": {"candidates": [{"family": "linear", "params": {}}]},
    "hgb300": {
        "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": 300, "early_stopping": False}}]
    },
}


# --- the baseline servers (run in their own processes) ---


def handwritten_app(model_uri: str, names: list[str], dtypes: dict[str, str]) -> Any:
    import mlflow.sklearn
    import pandas as pd
    from fastapi import FastAPI

    pipeline = mlflow.sklearn.load_model(model_uri)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        X = pd.DataFrame([body["record"]], columns=names).astype(dtypes)
        return {"scores": pipeline.predict_proba(X)[0].tolist()}

    return app


def floor_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        return {}

    return app


def serve_baseline(args: argparse.Namespace) -> None:
    import uvicorn

    if args.serve == "hand-written":
        app = handwritten_app(args.model_uri, json.loads(args.names), json.loads(args.dtypes))
    else:
        app = floor_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# --- processes ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_prefix() -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE)] if shutil.which("taskset") and can_pin() else []


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)


def pin_tree(pid: int, core: int) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``core``; the number of threads pinned."""
    import psutil

    pinned = 0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for thread in proc.threads():
            try:
                os.sched_setaffinity(thread.id, {core})
                pinned += 1
            except ProcessLookupError:
                pass
    return pinned


@dataclass
class Target:
    name: str
    url: str
    path: str
    process: subprocess.Popen[bytes]
    log: Path
    bodies: list[bytes] = field(default_factory=list)
    # Nanoseconds each thread of the server and of its children had run at the last reading, by (pid, thread id);
    # a thread that ends keeps what it had run then.
    ran_ns: dict[tuple[int, int], int] = field(default_factory=dict)

    def cpu_s(self) -> float:
        """CPU seconds the server and its children have used so far. Per thread from /proc/…/schedstat, to the
        nanosecond: psutil's user + system times count 10 ms ticks, coarse against a block of 50 requests (20 to
        150 ms). psutil's figure where there is no schedstat."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        if not Path("/proc/self/schedstat").exists():
            total = 0.0
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            return total
        for proc in procs:
            try:
                tasks = list(Path(f"/proc/{proc.pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                with contextlib.suppress(OSError, ValueError):  # the thread ended meanwhile
                    self.ran_ns[(proc.pid, int(task.name))] = int((task / "schedstat").read_text().split()[0])
        return sum(self.ran_ns.values()) / 1e9


def start(
    name: str, cmd: list[str], env: dict[str, str], port: int, path: str, ready: str, logs: Path, timeout_s: float = 120
) -> Target:
    import httpx

    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    target = Target(name, f"http://127.0.0.1:{port}", path, process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(target.url + ready, timeout=1).status_code == 200:
                return target
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop(target)
    raise RuntimeError(f"{name} did not answer within {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(target: Target) -> None:
    if target.process.poll() is None:
        os.killpg(target.process.pid, signal.SIGTERM)
        try:
            target.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(target.process.pid, signal.SIGKILL)
            target.process.wait(5)


# --- set-up through mlsvc's REST API ---


def wait_completed(client: Any, path: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resource = client.get(path).json()
        if resource["status"] in ("COMPLETED", "FAILED"):
            if resource["status"] == "FAILED":
                raise RuntimeError(f"{path} FAILED: {resource['message']}")
            return resource
        time.sleep(0.5)
    raise RuntimeError(f"{path} not COMPLETED within {timeout_s:.0f} s")


def train_churn(url: str, kind: str = "default") -> dict[str, Any]:
    """Train the model ``kind`` of MODELS on churn.csv through REST, and wait for it."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        ds = client.post("/v1/datasources", json={"name": "churn", "data_uri": str(CHURN), "target": "churned"})
        ds.raise_for_status()
        ds_id = ds.json()["id"]
        wait_completed(client, f"/v1/datasources/{ds_id}", 300)
        started = time.perf_counter()
        model = client.post("/v1/models", json={"name": "churn", "datasource_id": ds_id, **MODELS[kind]})
        model.raise_for_status()
        resource = wait_completed(client, f"/v1/models/{model.json()['id']}", 600)
        resource["_train_wall_s"] = time.perf_counter() - started
        return resource


def records(features: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Rows of churn.csv as a caller would send them: numbers, 0/1 flags and strings, null for a blank."""
    import pandas as pd

    from mlsvc.datasources.values import coerce_frame
    from mlsvc.resources import Schema

    schema = Schema.model_validate_json(CHURN.with_name(CHURN.name + ".schema").read_text())
    raw = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    typed, _ = coerce_frame(raw.head(n), schema)
    out = []
    for _, row in typed.iterrows():
        record: dict[str, Any] = {}
        for a in features:
            value = row[a["attributeName"]]
            missing = value is None or (isinstance(value, float) and value != value)
            record[a["attributeName"]] = (
                None if missing else (float(value) if a["attributeType"] in ("NUMERIC", "BINARY") else str(value))
            )
        out.append(record)
    return out


# --- measuring ---


def encode(target: str, record: dict[str, Any]) -> bytes:
    import orjson

    if target == "mlflow":
        return orjson.dumps({"dataframe_records": [record]})
    return orjson.dumps({"record": record})


HEADERS = {"content-type": "application/json"}


def sequential_round(
    targets: dict[str, Target], order: list[str], n: int, block: int, clients: dict[str, Any]
) -> dict[str, tuple[list[float], int, float]]:
    """One round: ``n`` one-at-a-time requests per target, sent in blocks of ``block`` with the targets taking
    turns block by block (and the order rotated every block), so a busy moment of the machine falls on all of
    them alike. Per target: latencies in ms, non-200 answers, and the CPU seconds its server used."""
    lat: dict[str, list[float]] = {name: [] for name in order}
    errors = dict.fromkeys(order, 0)
    cpu = dict.fromkeys(order, 0.0)
    for b, first in enumerate(range(0, n, block)):
        turn = order[b % len(order) :] + order[: b % len(order)]
        for name in turn:
            target, client, out = targets[name], clients[name], lat[name]
            bodies, path = target.bodies, target.path
            cpu0 = target.cpu_s()
            for i in range(first, min(n, first + block)):
                body = bodies[i % len(bodies)]
                t0 = time.perf_counter_ns()
                r = client.post(path, content=body, headers=HEADERS)
                out.append((time.perf_counter_ns() - t0) / 1e6)
                errors[name] += r.status_code != 200
            cpu[name] += target.cpu_s() - cpu0
    return {name: (lat[name], errors[name], cpu[name]) for name in order}


def concurrent(target: Target, threads: int, seconds: float) -> dict[str, float]:
    """Requests/s with ``threads`` clients for ``seconds``, and the CPU the server and this client used."""
    import httpx

    bodies = target.bodies
    counts = [0] * threads
    errors = [0] * threads
    go = threading.Event()
    deadline = [0.0]

    def worker(k: int) -> None:
        with httpx.Client(base_url=target.url, timeout=30) as client:
            client.post(target.path, content=bodies[k], headers=HEADERS)  # connect before the clock starts
            go.wait()
            i = k
            while time.perf_counter() < deadline[0]:
                r = client.post(target.path, content=bodies[i % len(bodies)], headers=HEADERS)
                counts[k] += 1
                errors[k] += r.status_code != 200
                i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    time.sleep(0.2)
    server_cpu0, client_cpu0 = target.cpu_s(), time.process_time()
    started = time.perf_counter()
    deadline[0] = started + seconds
    go.set()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests": sum(counts),
        "wall": wall,
        "errors": sum(errors),
        "server_cpu": target.cpu_s() - server_cpu0,
        "client_cpu": time.process_time() - client_cpu0,
    }


def concurrent_round(
    targets: dict[str, Target], order: list[str], threads: int, seconds: float, slice_s: float
) -> dict[str, dict[str, float]]:
    """One round of the concurrent run: slices of ``slice_s`` seconds, the targets taking turns slice by slice."""
    total = {
        name: {"requests": 0.0, "wall": 0.0, "errors": 0.0, "server_cpu": 0.0, "client_cpu": 0.0} for name in order
    }
    for k in range(max(1, round(seconds / slice_s))):
        for name in order[k % len(order) :] + order[: k % len(order)]:
            for key, value in concurrent(targets[name], threads, slice_s).items():
                total[name][key] += value
    return {
        name: {
            "rps": t["requests"] / t["wall"],
            "errors": t["errors"],
            "server_cpu": t["server_cpu"] / t["wall"],
            "client_cpu": t["client_cpu"] / t["wall"],
        }
        for name, t in total.items()
    }


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def check_agreement(targets: dict[str, Target], recs: list[dict[str, Any]], classes: list[str]) -> str:
    """mlsvc's P(positive) against the hand-written pipeline's, and labels against mlflow's, on the same records."""
    import httpx
    import orjson

    worst, label_mismatch, checked = 0.0, 0, 0
    with httpx.Client(timeout=30) as client:
        for i in range(min(200, len(recs))):
            mine = orjson.loads(
                client.post(
                    targets["mlsvc"].url + targets["mlsvc"].path, content=targets["mlsvc"].bodies[i], headers=HEADERS
                ).content
            )
            p = mine["predictions"][0]["predicted_scores"][classes[1]]
            theirs = orjson.loads(
                client.post(
                    targets["hand-written"].url + "/predict", content=targets["hand-written"].bodies[i], headers=HEADERS
                ).content
            )
            worst = max(worst, abs(p - theirs["scores"][1]))
            if "mlflow" in targets:
                answer = orjson.loads(
                    client.post(
                        targets["mlflow"].url + "/invocations", content=targets["mlflow"].bodies[i], headers=HEADERS
                    ).content
                )
                # The pipeline was fitted on class codes: mlflow's pyfunc answers 0 or 1.
                label_mismatch += classes[int(answer["predictions"][0])] != mine["predictions"][0]["predicted_label"]
            checked += 1
    note = f"{checked} records: max |P(mlsvc) - P(hand-written)| = {worst:.1e}"
    if "mlflow" in targets:
        note += f"; labels differing from mlflow's: {label_mismatch}"
    return note


def run(args: argparse.Namespace) -> None:
    import httpx

    sys.path.insert(0, str(ROOT))
    home = Path(tempfile.mkdtemp(prefix="mlsvc-http-bench-"))
    logs = home / "logs"
    logs.mkdir()
    pinning = can_pin()
    taskset = pin_prefix()
    targets: dict[str, Target] = {}
    notes: list[str] = []
    try:
        port = free_port()
        env = {**os.environ, "MLSVC_HOME": str(home), "MLSVC_PORT": str(port), "MLSVC_WORKERS": "1"}
        print(f"home {home}", flush=True)
        targets["mlsvc"] = start(
            "mlsvc", [sys.executable, "-m", "mlsvc.cli", "serve"], env, port, "", "/healthz", logs, 90
        )
        model = train_churn(targets["mlsvc"].url, args.model)
        targets["mlsvc"].path = f"/v1/models/{model['id']}/predict"
        if "model_uri" not in model:  # the job stores it, but the REST resource does not carry it
            model["model_uri"] = f"models:/{model['name']}/{model['version']}"
            notes.append(
                f"the Model resource has no model_uri field; used {model['model_uri']}, the registry's "
                f"URI of the version (mlflow_run_id {model['mlflow_run_id']})"
            )
        selected = next((row for row in model.get("leaderboard", []) if row.get("selected")), None)
        print(
            f"model {model['id']} v{model['version']} (--model {args.model}) trained in "
            f"{model['_train_wall_s']:.1f} s through REST: {model['metrics']['selected']}"
            f"{' ' + json.dumps(selected['params']) if selected and 'candidates' in MODELS[args.model] else ''}, "
            f"validation AUC {model['metrics']['validation_score']:.4f}; {model['model_uri']}",
            flush=True,
        )
        if pinning:
            n = pin_tree(targets["mlsvc"].process.pid, SERVER_CORE)
            print(f"pinned mlsvc serve ({n} threads, API and job worker) to core {SERVER_CORE}", flush=True)
        else:
            notes.append("CPU pinning unavailable here: servers and client share all cores")

        features = model["features"]
        names = [a["attributeName"] for a in features]
        dtypes = {
            a["attributeName"]: "float64" if a["attributeType"] in ("NUMERIC", "BINARY") else "object" for a in features
        }
        tracking = f"sqlite:///{home / 'mlflow.db'}"
        base_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
        for name in ("hand-written", "floor"):
            p = free_port()
            cmd = [
                *taskset,
                sys.executable,
                __file__,
                "--serve",
                name,
                "--port",
                str(p),
                "--model-uri",
                model["model_uri"],
                "--names",
                json.dumps(names),
                "--dtypes",
                json.dumps(dtypes),
            ]
            targets[name] = start(name, cmd, base_env, p, "/predict", "/healthz", logs)
        p = free_port()
        mlflow_cmd = [
            *taskset,
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            model["model_uri"],
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(p),
        ]
        try:
            # It execs `uvicorn` by name: the venv's bin folder must be on PATH.
            mlflow_env = {**base_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            targets["mlflow"] = start("mlflow", mlflow_cmd, mlflow_env, p, "/invocations", "/ping", logs, 180)
        except RuntimeError as exc:
            notes.append(f"mlflow models serve skipped: it could not start here ({str(exc).splitlines()[0]})")
        if pinning and not taskset:
            for name in ("hand-written", "floor", "mlflow"):
                if name in targets:
                    pin_tree(targets[name].process.pid, SERVER_CORE)
        if pinning:
            os.sched_setaffinity(0, {CLIENT_CORE})
            notes.append(
                f"servers pinned to core {SERVER_CORE} ({'taskset -c' if taskset else 'sched_setaffinity'}), "
                f"client to core {CLIENT_CORE}"
            )

        recs = records(features, 1000)
        for name, target in targets.items():
            target.bodies = [encode(name, r) for r in recs]
        print("agreement:", check_agreement(targets, recs, model["classes"]), flush=True)

        order = [n for n in ("mlsvc", "hand-written", "mlflow", "floor") if n in targets]
        seq: dict[str, list[dict[str, float]]] = {n: [] for n in order}
        conc: dict[str, list[dict[str, float]]] = {n: [] for n in order}
        print(
            f"\nsequential: {args.requests} single-record requests per target per round in blocks of "
            f"{args.block}, targets taking turns; {args.rounds} rounds",
            flush=True,
        )
        print(
            f"concurrent: {args.threads} client threads, {args.concurrent_s:.0f} s per target per round in "
            f"slices of {args.slice_s:.0f} s, targets taking turns",
            flush=True,
        )
        clients = {name: httpx.Client(base_url=targets[name].url, timeout=30) for name in order}
        try:
            for name in order:  # warm-up: connections, caches, lazy imports
                for i in range(100):
                    clients[name].post(targets[name].path, content=targets[name].bodies[i], headers=HEADERS)
            for rnd in range(args.rounds):
                t0 = time.perf_counter()
                results = sequential_round(
                    targets, order[rnd % len(order) :] + order[: rnd % len(order)], args.requests, args.block, clients
                )
                print(f"  round {rnd + 1}, sequential ({time.perf_counter() - t0:.0f} s):", flush=True)
                for name in order:
                    lat, errors, cpu = results[name]
                    seq[name].append(
                        {
                            "p50": pct(lat, 50),
                            "p99": pct(lat, 99),
                            "rps": len(lat) / sum(lat) * 1000,
                            "errors": errors,
                            "cpu_ms": cpu / len(lat) * 1000,
                        }
                    )
                    row = seq[name][-1]
                    print(
                        f"    {name:<13} p50 {row['p50']:7.3f} ms  p99 {row['p99']:7.3f} ms  {row['rps']:6.0f}/s  "
                        f"server CPU {row['cpu_ms']:6.3f} ms/request  errors {errors}",
                        flush=True,
                    )
                results_c = concurrent_round(targets, order, args.threads, args.concurrent_s, args.slice_s)
                print(f"  round {rnd + 1}, concurrent x{args.threads}:", flush=True)
                for name in order:
                    conc[name].append(results_c[name])
                    c = conc[name][-1]
                    print(
                        f"    {name:<13} {c['rps']:7.0f}/s  server CPU {c['server_cpu']:.2f}  "
                        f"client CPU {c['client_cpu']:.2f}  errors {c['errors']:.0f}",
                        flush=True,
                    )
        finally:
            for client in clients.values():
                client.close()

        with httpx.Client() as client:
            metrics = client.get(targets["mlsvc"].url + "/metrics").text
        report(order, seq, conc, args, notes, metrics, model)
    finally:
        for target in targets.values():
            stop(target)
        if args.keep_home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def report(
    order: list[str],
    seq: dict[str, list[dict[str, float]]],
    conc: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
    notes: list[str],
    metrics: str,
    model: dict[str, Any],
) -> None:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\nmedians over {args.rounds} rounds (--model {args.model}: {model['metrics']['selected']})")
    print(
        f"{'target':<14}{'p50 ms':>9}{'p99 ms':>9}{'seq req/s':>11}{'CPU ms/req':>12}{'req/CPU-s':>11}"
        f"{f'x{args.threads} req/s':>12}{'server CPU':>12}{'client CPU':>12}{'errors':>8}"
    )
    for name in order:
        errors = sum(r["errors"] for r in seq[name]) + sum(r["errors"] for r in conc[name])
        print(
            f"{name:<14}{med(seq[name], 'p50'):>9.3f}{med(seq[name], 'p99'):>9.3f}{med(seq[name], 'rps'):>11.0f}"
            f"{med(seq[name], 'cpu_ms'):>12.3f}{1000 / med(seq[name], 'cpu_ms'):>11.0f}"
            f"{med(conc[name], 'rps'):>12.0f}{med(conc[name], 'server_cpu'):>12.2f}"
            f"{med(conc[name], 'client_cpu'):>12.2f}{errors:>8.0f}"
        )

    print(
        "  seq req/s = 1 / mean latency; CPU ms/req = the server's CPU time per sequential request, and\n"
        "  req/CPU-s = 1000 / that: what one core would serve if the server had it to itself;\n"
        "  server CPU / client CPU = cores busy during the concurrent run (1.00 = the whole pinned core)"
    )
    print("\nratios (medians of the per-round ratios)")
    for other in [n for n in order if n != "mlsvc"]:
        p50 = statistics.median(o["p50"] / m["p50"] for m, o in zip(seq["mlsvc"], seq[other], strict=True))
        p99 = statistics.median(o["p99"] / m["p99"] for m, o in zip(seq["mlsvc"], seq[other], strict=True))
        rps = statistics.median(m["rps"] / o["rps"] for m, o in zip(conc["mlsvc"], conc[other], strict=True))
        srps = statistics.median(m["rps"] / o["rps"] for m, o in zip(seq["mlsvc"], seq[other], strict=True))
        cpu = statistics.median(o["cpu_ms"] / m["cpu_ms"] for m, o in zip(seq["mlsvc"], seq[other], strict=True))
        if other == "floor":
            print(
                f"  mlsvc / floor:        p50 {1 / p50:5.2f}x the floor's, p99 {1 / p99:5.2f}x; "
                f"throughput {srps:5.2f} (sequential), {rps:5.2f} (x{args.threads}), {cpu:5.2f} (per CPU-s)"
            )
        else:
            print(
                f"  mlsvc vs {other + ':':<13} p50 {p50:5.1f}x lower, p99 {p99:5.1f}x lower; "
                f"throughput {srps:5.1f}x (sequential), {rps:5.1f}x (x{args.threads}), {cpu:5.1f}x (per CPU-s)"
            )
    if "floor" in order:

        def ratio(key: str) -> float:
            return statistics.median(m[key] / f[key] for m, f in zip(seq["mlsvc"], seq["floor"], strict=True))

        print(
            f"\nmlsvc against the floor: p50 {med(seq['mlsvc'], 'p50'):.3f} ms vs {med(seq['floor'], 'p50'):.3f} ms "
            f"({ratio('p50'):.2f}x); server CPU per request {med(seq['mlsvc'], 'cpu_ms'):.3f} ms vs "
            f"{med(seq['floor'], 'cpu_ms'):.3f} ms ({ratio('cpu_ms'):.2f}x)"
        )
    print("\n/metrics (mlsvc):")
    for line in metrics.splitlines():
        if line.startswith(("mlsvc_predictions_total", "mlsvc_scoring_fallback_total")):
            print("  " + line)
    if not any(line.startswith("mlsvc_scoring_fallback_total{") for line in metrics.splitlines()):
        print("  (no mlsvc_scoring_fallback_total sample: no record was scored by the plain pipeline)")
    for note in notes:
        print("note:", note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="client threads of the concurrent run")
    parser.add_argument("--block", type=int, default=50, help="sequential requests per turn of a target")
    parser.add_argument("--concurrent-s", type=float, default=5.0, help="seconds per target per round")
    parser.add_argument("--slice-s", type=float, default=1.0, help="concurrent seconds per turn of a target")
    parser.add_argument("--model", choices=list(MODELS), default="default", help="the model to train and serve")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary MLSVC_HOME and server logs")
    parser.add_argument("--serve", choices=["hand-written", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-uri", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--dtypes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_baseline(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
