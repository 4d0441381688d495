"""Benchmark: batch predictions. A batch prediction job of the real ``mlsvc serve`` against the script an MLflow
user would write for the same thing (``mlflow.pyfunc.load_model`` + ``pd.read_csv(chunksize=...)`` + ``predict``),
on the same registered model version and the same N-row CSV, local and in loopback S3, side by side in one run.

Run by hand, not in CI:

    .venv/bin/python bench/batch_bench.py --rows 1000000                   # 3 models x local, s3; one round
    .venv/bin/python bench/batch_bench.py --rows 100000 --models linear     # a quick look
    .venv/bin/python bench/batch_bench.py --rows 1000000 10000000 --rounds 3 --sources s3

What it does:

- Writes the input once into ``--cache`` (default /tmp/mlsvc-batch-bench, kept between runs): the rows of
  ``datasources/churn.csv`` without the target ``churned``, repeated to ``--rows`` rows (streamed to disk; 10 M rows
  is about 0.9 GB). For ``s3`` it starts moto's S3 server on loopback in a process of its own (so it does not share
  the benchmark's GIL) and uploads the file there.
- Starts ``python -m mlsvc.cli serve`` in a subprocess with a fresh MLSVC_HOME in a temporary folder, a free port,
  MLSVC_WORKERS=1 (one job worker with both cores to itself, so MLSVC_BATCH_PROCESSES defaults to 2),
  MLSVC_LOCAL_ROOTS=/ and the loopback S3 endpoint. Through REST it makes a datasource on churn.csv (target
  churned) and the models: ``linear`` (candidates ``[{"family": "linear"}]``), ``hgb300`` (one
  hist_gradient_boosting, ``max_iter`` 300 without early stopping) and ``default`` (the search, 10 s budget).
- For every round, rows, model and source, interleaved so that a busy machine slows both alike:
  - ``mlsvc``: POST /v1/batch-predictions (``data_uri`` the CSV, ``output_uri`` a fresh folder or
    ``s3://bucket/out-<n>/``) and GET every 0.1 s until COMPLETED; the time is POST to the poll that saw COMPLETED.
    Meanwhile a thread samples every 0.05 s the RSS of the whole server process tree (the serve process and all its
    descendants: the job worker and the job's scoring processes), summing VmRSS from /proc (pages shared between
    processes count once per process; a child between vfork and exec, whose VmRSS is its parent's, is left out).
    It reports the tree's RSS just before the POST, its peak during the job and the growth, and the longest gap
    between two polls in which ``rows_scored`` moved.
  - ``script``: a fresh ``python`` process running the script in BASELINE_SCRIPT below: it loads
    ``models:/<name>/<version>`` from the server's MLflow store (sqlite:///<home>/mlflow.db), reads the CSV with
    ``pd.read_csv(chunksize=100_000)`` typed as the model's signature asks (strings as str, doubles as float64 with
    yes/no read as 1/0), predicts each chunk and appends the labels to a CSV. From S3 it reads the GetObject body and
    uploads its output file with ``upload_file`` at the end. Timed from the process's start to its end (imports
    and the model load included, as the job's time includes its own load); its peak RSS is its VmHWM.
- Checks both outputs: the job's gzipped CSV files named by its manifest (``<output_uri>/batch-prediction/``) must
  hold exactly N data rows (else the benchmark fails), and their ``bestAnswer`` is compared with the script's labels
  row by row (they agree but for scores exactly at the 0.5 threshold, where mlsvc says the positive class and
  scikit-learn's ``predict`` the negative one).
- Prints one table, medians over rounds per cell; ratio is mlsvc rows/s ÷ script rows/s. Per-run lines on stderr
  also give the phases: the job's wait for a worker and its first rows, the script's import, load, read, predict
  and write times.
- Cleans up: the server (SIGTERM, then waits), the moto server and the temporary folder; the input cache stays.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import gzip
import io
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench's own helpers, beside this file.
from http_predict_bench import Target, free_port, start, stop, wait_completed

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "datasources" / "churn.csv"
TARGET = "churned"
BUCKET = "mlsvc-batch-bench"
POLL_S = 0.1
SAMPLE_S = 0.05
MODELS: dict[str, dict[str, Any]] = {
    "linear": {"candidates": [{"family": "linear"}]},
    "hgb300": {
        "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": 300, "early_stopping": False}}]
    },
    "default": {"time_budget_s": 10},
}
SOURCES = ("local", "s3")

# What an MLflow user would write to score a CSV with a registered model: run as a fresh process with one JSON
# argument; it writes its figures as JSON to the file named there.
BASELINE_SCRIPT = """
import json
import sys
import time

T0 = time.perf_counter()
import mlflow
import numpy as np
import pandas as pd

DTYPES = {"string": str, "double": "float64", "float": "float32", "long": "int64", "integer": "int32",
          "boolean": "bool"}


def vm_hwm_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def main():
    cfg = json.loads(sys.argv[1])
    times = {"import": time.perf_counter() - T0}
    mlflow.set_tracking_uri(cfg["tracking_uri"])
    mlflow.set_registry_uri(cfg["tracking_uri"])
    t = time.perf_counter()
    model = mlflow.pyfunc.load_model(cfg["model_uri"])
    times["load"] = time.perf_counter() - t
    dtypes = {c.name: DTYPES[c.type.name] for c in model.metadata.get_input_schema().inputs}
    s3 = None
    if cfg["input"].startswith("s3://"):
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
        bucket, key = cfg["input"][5:].split("/", 1)
        source = s3.get_object(Bucket=bucket, Key=key)["Body"]
    else:
        source = cfg["input"]
    classes = np.asarray(cfg["classes"])
    times.update(read=0.0, predict=0.0, write=0.0)
    rows = 0
    # The flags are yes/no in the file and doubles in the signature; and mlsvc trained on "none" (beside pandas'
    # own NA words) as a missing value, so internet_service "none" must be read as missing here too.
    reader = pd.read_csv(
        source,
        chunksize=100_000,
        usecols=list(dtypes),
        dtype=dtypes,
        true_values=["yes"],
        false_values=["no"],
        na_values=["none", "?", "-", "--"],
    )
    with open(cfg["output"], "w", newline="") as out:
        while True:
            t = time.perf_counter()
            chunk = next(reader, None)
            times["read"] += time.perf_counter() - t
            if chunk is None:
                break
            t = time.perf_counter()
            predicted = np.asarray(model.predict(chunk))
            times["predict"] += time.perf_counter() - t
            t = time.perf_counter()
            labels = classes[predicted] if predicted.dtype.kind in "iub" else predicted.astype(str)
            pd.DataFrame({"prediction": labels}).to_csv(out, header=rows == 0, index=False)
            times["write"] += time.perf_counter() - t
            rows += len(chunk)
    if cfg.get("upload"):
        t = time.perf_counter()
        bucket, key = cfg["upload"][5:].split("/", 1)
        s3.upload_file(cfg["output"], bucket, key)
        times["upload"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - T0
    with open(cfg["result"], "w") as result:
        json.dump({"rows": rows, "peak_kib": vm_hwm_kib(), "times": times}, result)


main()
"""


# --- the input ---


def churn_rows() -> tuple[bytes, list[bytes]]:
    """churn.csv's header and rows without the target column, as CSV lines."""
    with CHURN.open(newline="") as f:
        table = list(csv.reader(f))
    drop = table[0].index(TARGET)

    def line(cells: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(cells[:drop] + cells[drop + 1 :])
        return out.getvalue().encode()

    return line(table[0]), [line(cells) for cells in table[1:] if cells]


def input_csv(cache: Path, rows: int) -> Path:
    """The N-row input in the cache, written once (streamed: the body's bytes repeated, never the whole file)."""
    path = cache / f"churn-{rows}.csv"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    header, lines = churn_rows()
    body = b"".join(lines)
    partial = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    with partial.open("wb") as out:
        out.write(header)
        full, rest = divmod(rows, len(lines))
        for _ in range(full):
            out.write(body)
        out.write(b"".join(lines[:rest]))
    partial.replace(path)
    log(f"wrote {path} ({path.stat().st_size:,} bytes) in {time.perf_counter() - started:.1f} s")
    return path


# --- loopback S3 ---


@dataclass
class S3:
    endpoint: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )


def aws_env(endpoint: str, scratch: Path) -> dict[str, str]:
    """The loopback endpoint and dummy credentials, nothing from a real AWS set-up (as tests/s3server.py sets)."""
    empty = scratch / "no-aws-config"
    empty.touch()
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
    }


def clean_env() -> dict[str, str]:
    """This process's environment without any AWS_*, MLSVC_* or MLFLOW_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLSVC_", "MLFLOW_"))}


def start_s3(scratch: Path) -> S3:
    """moto's S3 server on a free loopback port, in a process of its own."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = aws_env(endpoint, scratch)
    with (scratch / "moto.log").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**clean_env(), **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    s3 = S3(endpoint, process, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto exited with {process.returncode}: {(scratch / 'moto.log').read_text()[-2000:]}")
        try:
            s3.client().list_buckets()
            return s3
        except Exception:
            time.sleep(0.2)
    stop_process(process)
    raise RuntimeError("moto's S3 server did not answer within 60 s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def upload(s3: S3, path: Path) -> str:
    from boto3.s3.transfer import TransferConfig

    client = s3.client()
    key = path.name
    try:
        if client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == path.stat().st_size:
            return f"s3://{BUCKET}/{key}"
    except Exception:
        pass
    started = time.perf_counter()
    config = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20)
    client.upload_file(str(path), BUCKET, key, Config=config)
    log(f"uploaded s3://{BUCKET}/{key} in {time.perf_counter() - started:.1f} s")
    return f"s3://{BUCKET}/{key}"


def s3_delete_prefix(s3: S3, prefix: str) -> None:
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])


# --- the server and its models ---


def start_mlsvc(home: Path, s3: S3 | None) -> Target:
    """``mlsvc serve`` (with http_predict_bench's ``start``, in a session of its own) as tests/servers.py starts it:
    one job worker, any local path allowed, the loopback S3 endpoint if any."""
    port = free_port()
    env = {
        **clean_env(),
        **(s3.env if s3 else {}),
        "MLSVC_HOME": str(home),
        "MLSVC_PORT": str(port),
        "MLSVC_WORKERS": "1",
        "MLSVC_LOCAL_ROOTS": "/",
    }
    home.mkdir(parents=True, exist_ok=True)
    return start("mlsvc", [sys.executable, "-m", "mlsvc.cli", "serve"], env, port, "", "/healthz", home)


def mlflow_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"  # MLSVC_MLFLOW_TRACKING_URI's default (mlsvc/config.py)


@dataclass
class BuiltModel:
    key: str
    name: str
    version: int
    classes: list[str]
    selected: str
    train_s: float

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def mlflow_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def build_models(api: httpx.Client, keys: list[str]) -> dict[str, BuiltModel]:
    """A datasource on churn.csv, then the models asked for, trained one after the other by the one worker."""
    created = api.post("/v1/datasources", json={"name": "churn", "data_uri": str(CHURN), "target": TARGET})
    created.raise_for_status()
    ds = wait_completed(api, f"/v1/datasources/{created.json()['id']}", 300)
    started = time.perf_counter()
    posted = {}
    for key in keys:
        body = {"name": f"batch-{key}", "datasource_id": ds["id"], **MODELS[key]}
        response = api.post("/v1/models", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"POST /v1/models {body}: {response.status_code} {response.text}")
        posted[key] = response.json()["id"]
    built = {}
    for key, model_id in posted.items():
        model = wait_completed(api, f"/v1/models/{model_id}", 900)
        if model["model_type"] != "BINARY":
            raise RuntimeError(f"model {key} is {model['model_type']}, not BINARY")
        selected = (model.get("metrics") or {}).get("selected") or _selected(model)
        built[key] = BuiltModel(
            key, model["name"], model["version"], model["classes"], str(selected), time.perf_counter() - started
        )
        log(f"model {key}: {built[key].ref} ({built[key].selected}), done {built[key].train_s:.0f} s after the POSTs")
    settle(api, built)
    return built


def settle(api: httpx.Client, built: dict[str, BuiltModel]) -> None:
    """One real-time prediction from each model, so the server has loaded (read, hashed and verified) them all,
    as its warmer does once after training: that second or two of CPU belongs to neither side of the run."""
    header, rows = churn_rows()
    record = dict(zip(next(csv.reader([header.decode()])), next(csv.reader([rows[0].decode()])), strict=True))
    for model in built.values():
        api.post(f"/v1/models/{model.name}:{model.version}/predict", json={"record": record}).raise_for_status()
    time.sleep(2.0)


def _selected(model: dict[str, Any]) -> str:
    for row in model.get("leaderboard") or []:
        if row.get("status") == "selected":
            return str(row.get("candidate"))
    return "?"


# --- memory of the server's process tree ---


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant, from /proc/<pid>/task/*/children; a child still sharing its parent's address
    space (between vfork and exec, as subprocess starts a program) is left out, since its VmRSS is its parent's."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                stack.extend(int(c) for c in children.read_text().split() if not shares_memory(pid, int(c)))
    return found


_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
_KCMP_VM = 1


def shares_memory(parent: int, child: int) -> bool:
    """Whether the two processes have one address space (kcmp(2) with KCMP_VM; False where it cannot tell)."""
    if _SYS_KCMP is None:
        return False
    return bool(_LIBC.syscall(_SYS_KCMP, parent, child, _KCMP_VM, 0, 0) == 0)


_LIBC = ctypes.CDLL(None, use_errno=True)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0  # gone, or a zombie (no VmRSS)


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(pid) for pid in tree_pids(root))


class TreeSampler(threading.Thread):
    """Samples the tree's RSS every ``every_s`` until stopped; its peak."""

    def __init__(self, root: int, every_s: float = SAMPLE_S) -> None:
        super().__init__(daemon=True)
        self.root, self.every_s = root, every_s
        self.peak_kib = 0
        self.samples = 0
        self.most_processes = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = tree_pids(self.root)
            self.peak_kib = max(self.peak_kib, sum(rss_kib(pid) for pid in pids))
            self.most_processes = max(self.most_processes, len(pids))
            self.samples += 1
            self._done.wait(self.every_s)

    def finish(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kib


# --- one mlsvc job ---


@dataclass
class Poll:
    t: float
    status: str
    progress: float
    rows_scored: int


@dataclass
class JobRun:
    seconds: float
    server_seconds: float
    rss_before_kib: int
    rss_peak_kib: int
    processes: int
    polls: list[Poll]
    resource: dict[str, Any]
    labels: np.ndarray = field(repr=False)

    @property
    def moves(self) -> list[float]:
        """When each poll that saw ``rows_scored`` change was answered (s after the POST)."""
        return [b.t for a, b in itertools.pairwise(self.polls) if b.rows_scored != a.rows_scored]

    @property
    def progress_moves(self) -> int:
        return sum(b.progress != a.progress for a, b in itertools.pairwise(self.polls))

    @property
    def progress_backwards(self) -> bool:
        return any(b.progress < a.progress or b.rows_scored < a.rows_scored for a, b in itertools.pairwise(self.polls))

    @property
    def longest_gap_s(self) -> float:
        moves = self.moves
        return max((b - a for a, b in itertools.pairwise(moves)), default=math.nan)

    @property
    def started_s(self) -> float:
        """When the job was first seen RUNNING (s after the POST)."""
        return next((p.t for p in self.polls if p.status != "PENDING"), math.nan)


def run_job(
    api: httpx.Client,
    server: Target,
    model: BuiltModel,
    data_uri: str,
    output_uri: str,
    rows: int,
    timeout_s: float,
    outputs: Outputs,
) -> JobRun:
    sampler = TreeSampler(server.process.pid)
    before = tree_rss_kib(server.process.pid)
    sampler.peak_kib = before
    sampler.start()
    polls: list[Poll] = []
    started = time.perf_counter()
    try:
        response = api.post(
            "/v1/batch-predictions", json={"model": model.ref, "data_uri": data_uri, "output_uri": output_uri}
        )
        if response.status_code >= 400:
            raise RuntimeError(f"POST /v1/batch-predictions: {response.status_code} {response.text}")
        path = f"/v1/batch-predictions/{response.json()['id']}"
        while True:
            resource = api.get(path).json()
            t = time.perf_counter() - started
            polls.append(Poll(t, resource["status"], resource["progress"], resource["rows_scored"]))
            if resource["status"] in ("COMPLETED", "FAILED"):
                break
            if t > timeout_s:
                raise RuntimeError(f"{path} still {resource['status']} after {timeout_s:.0f} s")
            time.sleep(POLL_S)
    finally:
        peak = sampler.finish()
    if resource["status"] == "FAILED":
        raise RuntimeError(f"batch prediction {resource['id']} FAILED after {t:.1f} s: {resource['message']}")
    server_s = (_when(resource["updated_at"]) - _when(resource["created_at"])).total_seconds()
    labels = job_labels(resource, model, rows, output_uri, outputs)
    return JobRun(t, server_s, before, peak, sampler.most_processes, polls, resource, labels)


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# --- reading the outputs back ---


class Outputs:
    """Where outputs live: local paths or s3:// URIs, read as binary streams."""

    def __init__(self, s3: S3 | None) -> None:
        self.s3 = s3

    def open(self, uri: str) -> Any:
        if uri.startswith("s3://"):
            assert self.s3 is not None
            bucket, key = uri[5:].split("/", 1)
            return self.s3.client().get_object(Bucket=bucket, Key=key)["Body"]
        return open(uri, "rb")

    def listing(self, prefix: str) -> list[str]:
        if prefix.startswith("s3://"):
            assert self.s3 is not None
            bucket, key = prefix[5:].split("/", 1)
            pages = self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            return sorted(f"s3://{bucket}/{o['Key']}" for page in pages for o in page.get("Contents", []))
        return sorted(str(p) for p in Path(prefix).glob("*"))

    def remove(self, prefix: str) -> None:
        if prefix.startswith("s3://"):
            assert self.s3 is not None
            s3_delete_prefix(self.s3, prefix[5:].split("/", 1)[1])
        else:
            shutil.rmtree(prefix, ignore_errors=True)


def positive(stream: Any, column: str, positive_label: str, rows: int, what: str) -> np.ndarray:
    """Whether each data row's ``column`` is the positive label; fails unless the stream holds exactly ``rows``."""
    out = np.zeros(rows, dtype=bool)
    seen = 0
    for chunk in pd.read_csv(stream, usecols=[column], dtype=str, keep_default_na=False, chunksize=1_000_000):
        values = chunk[column].to_numpy() == positive_label
        if seen + len(values) <= rows:
            out[seen : seen + len(values)] = values
        seen += len(values)
    if seen != rows:
        raise RuntimeError(f"{what}: {seen:,} data rows, expected {rows:,}")
    return out


def job_labels(resource: dict[str, Any], model: BuiltModel, rows: int, output_uri: str, outputs: Outputs) -> np.ndarray:
    """The job's bestAnswer, from the files its manifest names (checked against the files under result/)."""
    if resource["rows_scored"] != rows:
        raise RuntimeError(f"batch prediction {resource['id']}: rows_scored {resource['rows_scored']:,} != {rows:,}")
    base = output_uri.rstrip("/") + "/batch-prediction"
    with outputs.open(resource["manifest_uri"]) as f:
        manifest: dict[str, str] = json.load(f)
    files = list(manifest.values())
    on_store = [u for u in outputs.listing(base + "/result/") if u.endswith(".gz")]
    if sorted(files) != on_store:
        raise RuntimeError(f"manifest names {sorted(files)}, but result/ holds {on_store}")
    parts, counts = [], [o["rows"] for o in resource["outputs"]]
    for uri, n in zip(files, counts, strict=True):
        with outputs.open(uri) as raw, gzip.open(raw) as stream:
            parts.append(positive(stream, "bestAnswer", model.classes[1], n, uri))
    labels = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    if len(labels) != rows:
        raise RuntimeError(f"batch prediction {resource['id']}: {len(labels):,} rows in its output, expected {rows:,}")
    return labels


# --- one run of the baseline script ---


@dataclass
class ScriptRun:
    seconds: float
    peak_kib: int
    times: dict[str, float]
    labels: np.ndarray = field(repr=False)


def run_script(
    script: Path, model: BuiltModel, server: Target, data_uri: str, scratch: Path, n: int, rows: int, s3: S3 | None
) -> ScriptRun:
    output = scratch / f"script-{n}.csv"
    result = scratch / f"script-{n}.json"
    cfg = {
        "tracking_uri": mlflow_uri(server.log.parent),
        "model_uri": model.mlflow_uri,
        "input": data_uri,
        "output": str(output),
        "classes": model.classes,
        "result": str(result),
        "upload": f"s3://{BUCKET}/script-{n}/predictions.csv" if data_uri.startswith("s3://") else None,
    }
    env = {**clean_env(), **(s3.env if s3 else {})}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)], cwd=scratch, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the baseline script exited with {done.returncode}:\n{done.stderr[-3000:]}")
    figures = json.loads(result.read_text())
    if figures["rows"] != rows:
        raise RuntimeError(f"the baseline script read {figures['rows']:,} rows, expected {rows:,}")
    with output.open("rb") as f:
        labels = positive(f, "prediction", model.classes[1], rows, str(output))
    output.unlink()
    if cfg["upload"] and s3 is not None:
        s3_delete_prefix(s3, f"script-{n}/")
    return ScriptRun(seconds, figures["peak_kib"], figures["times"], labels)


# --- the rounds and the table ---


@dataclass
class Cell:
    model: str
    source: str
    rows: int
    jobs: list[JobRun] = field(default_factory=list)
    scripts: list[ScriptRun] = field(default_factory=list)
    agreement: list[float] = field(default_factory=list)


def measure(
    args: argparse.Namespace,
    api: httpx.Client,
    server: Target,
    models: dict[str, BuiltModel],
    inputs: dict[tuple[int, str], str],
    scratch: Path,
    s3: S3 | None,
) -> dict[tuple[str, str, int], Cell]:
    script = scratch / "baseline.py"
    script.write_text(BASELINE_SCRIPT)
    outputs = Outputs(s3)
    cells: dict[tuple[str, str, int], Cell] = {}
    n = 0
    for round_ in range(args.rounds):
        for rows in args.rows:
            for key, model in models.items():
                for source in args.sources:
                    n += 1
                    cell = cells.setdefault((key, source, rows), Cell(key, source, rows))
                    data_uri = inputs[(rows, source)]
                    output_uri = f"s3://{BUCKET}/out-{n}/" if source == "s3" else f"{scratch / f'out-{n}'}/"
                    job = run_job(api, server, model, data_uri, output_uri, rows, args.job_timeout, outputs)
                    outputs.remove(output_uri)
                    log_job(round_, key, source, rows, job)
                    run = run_script(script, model, server, data_uri, scratch, n, rows, s3)
                    log_script(round_, key, source, rows, run)
                    cell.jobs.append(job)
                    cell.scripts.append(run)
                    cell.agreement.append(float(np.mean(job.labels == run.labels)) if rows else math.nan)
                    job.labels = run.labels = np.zeros(0, dtype=bool)  # not kept across runs
    return cells


def log_job(round_: int, key: str, source: str, rows: int, job: JobRun) -> None:
    moves = job.moves
    first, last = (moves[0], moves[-1]) if moves else (math.nan, math.nan)
    seconds = "{:.2f}"
    r = job.resource
    log(
        f"round {round_ + 1} {key:<8} {source:<5} {rows:>10,} mlsvc  {job.seconds:7.2f} s "
        f"(server {job.server_seconds:.2f} s; RUNNING at {job.started_s:.2f} s; rows first moved at "
        f"{show(seconds, first)} s, last at {show(seconds, last)} s, {len(moves)} moves, longest gap "
        f"{show(seconds, job.longest_gap_s)} s; progress moved {job.progress_moves} times"
        f"{', WENT BACKWARDS' if job.progress_backwards else ''}); tree RSS {mib(job.rss_before_kib)} -> "
        f"{mib(job.rss_peak_kib)} over up to {job.processes} processes; invalid-value rows "
        f"{r['rows_with_invalid_values']:,}, bad rows {r['invalid_row_count']:,}"
    )


def log_script(round_: int, key: str, source: str, rows: int, run: ScriptRun) -> None:
    phases = ", ".join(f"{k} {v:.2f}" for k, v in run.times.items() if k != "total")
    log(
        f"round {round_ + 1} {key:<8} {source:<5} {rows:>10,} script {run.seconds:7.2f} s "
        f"({phases}; in-process total {run.times['total']:.2f}); peak {mib(run.peak_kib)}"
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


COLUMNS: list[tuple[str, str, Callable[[Cell], float]]] = [
    ("mlsvc s", "{:.2f}", lambda c: median([j.seconds for j in c.jobs])),
    ("mlsvc rows/s", "{:,.0f}", lambda c: median([c.rows / j.seconds for j in c.jobs])),
    ("script s", "{:.2f}", lambda c: median([s.seconds for s in c.scripts])),
    ("script rows/s", "{:,.0f}", lambda c: median([c.rows / s.seconds for s in c.scripts])),
    ("ratio", "{:.2f}", lambda c: median([s.seconds / j.seconds for j, s in zip(c.jobs, c.scripts, strict=True)])),
    ("RSS before MB", "{:,.0f}", lambda c: median([j.rss_before_kib / 1024 for j in c.jobs])),
    ("RSS peak MB", "{:,.0f}", lambda c: median([j.rss_peak_kib / 1024 for j in c.jobs])),
    ("growth MB", "{:,.0f}", lambda c: median([(j.rss_peak_kib - j.rss_before_kib) / 1024 for j in c.jobs])),
    ("script peak MB", "{:,.0f}", lambda c: median([s.peak_kib / 1024 for s in c.scripts])),
    ("longest gap s", "{:.2f}", lambda c: median([j.longest_gap_s for j in c.jobs])),
    ("agreement", "{:.6f}", lambda c: median(c.agreement)),
]


def report(args: argparse.Namespace, cells: dict[tuple[str, str, int], Cell], models: dict[str, BuiltModel]) -> None:
    print(f"\n{code_state()}; {os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for m in models.values():
        print(f"model {m.key}: {m.ref} selected {m.selected}")
    print(
        f"medians of {args.rounds} round(s); ratio = mlsvc rows/s ÷ script rows/s; RSS = the server's process tree "
        "(MiB); agreement = fraction of rows where bestAnswer equals the script's label\n"
    )
    head = ["model", "source", "rows"] + [name for name, _, _ in COLUMNS]
    table = [
        [c.model, c.source, f"{c.rows:,}"] + [show(fmt, get(c)) for _, fmt, get in COLUMNS] for c in cells.values()
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    print(
        "| "
        + " | ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))
        + " |"
    )
    print("|" + "|".join("-" * (w + 1) + (":" if i >= 2 else "-") for i, w in enumerate(widths)) + "|")
    for row in table:
        cells_text = (v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        print("| " + " | ".join(cells_text) + " |")
    low = [(c, a) for c in cells.values() for a in c.agreement if a < 0.9999]
    for c, a in low:
        print(f"note: {c.model} {c.source} {c.rows:,}: label agreement {a:.6f} is below 0.9999")


def show(fmt: str, value: float) -> str:
    return "–" if math.isnan(value) else fmt.format(value)


def code_state() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--short", "mlsvc")
    return f"code: commit {git('rev-parse', '--short', 'HEAD')}" + (
        f" with {len(dirty.splitlines())} uncommitted file(s) in mlsvc/" if dirty else ""
    )


# --- main ---


def run(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="mlsvc-batch-run-"))
    s3: S3 | None = None
    server: Target | None = None
    try:
        inputs: dict[tuple[int, str], str] = {}
        for rows in args.rows:
            path = input_csv(args.cache, rows)
            if "local" in args.sources:
                inputs[(rows, "local")] = str(path)
        if "s3" in args.sources:
            s3 = start_s3(scratch)
            s3.client().create_bucket(Bucket=BUCKET)
            for rows in args.rows:
                inputs[(rows, "s3")] = upload(s3, input_csv(args.cache, rows))
        home = scratch / "home"
        server = start_mlsvc(home, s3)
        with httpx.Client(base_url=server.url, timeout=60) as api:
            models = build_models(api, args.models)
            cells = measure(args, api, server, models, inputs, scratch, s3)
        report(args, cells, models)
    finally:
        if server is not None:
            stop(server)
        if s3 is not None:
            stop_process(s3.process)
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="input rows (several: one each)")
    parser.add_argument("--models", default="linear,hgb300,default", help=f"a subset of {','.join(MODELS)}")
    parser.add_argument("--sources", default="local,s3", help="local, s3 or both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mlsvc-batch-bench"), help="kept input files")
    parser.add_argument("--job-timeout", type=float, default=3600, help="seconds before a job counts as stuck")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (MLSVC_HOME, server log)")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [m for m in args.models if m not in MODELS] + [s for s in args.sources if s not in SOURCES]
    if unknown or not args.models or not args.sources or min(args.rows) < 1:
        parser.error(f"unknown or empty --models/--sources/--rows: {unknown or 'none given'}")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that the servers and the temporary folder go too
    run(args)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
