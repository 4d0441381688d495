"""Benchmark: model quality of mlsvc, trained and scored through its REST API, against FLAML at the same time budget
(and AutoGluon at 120 s where it installs), on real tables with fixed train / test splits.

Run by hand, not in CI (any Python 3.11 starts it; it makes and re-executes itself in its own environment):

    python3 bench/quality_bench.py --budgets 30 --seeds 0                 # the quick look (~15 tables x ~40 s)
    python3 bench/quality_bench.py                                        # 10, 30, 120 s x seeds 0, 1, 2
    python3 bench/quality_bench.py --budgets 10 --datasets diamonds,movies --no-autogluon
    python3 bench/quality_bench.py --list                                 # the tables, their sources and targets

What it does:

- Environment: ``bench/.venv-quality`` (``python3 -m venv`` + ``bench/quality_requirements.txt``, and ISLP with
  ``--no-deps``: only its data files are used, not its torch labs), made when missing or when the requirements
  changed. FLAML is never a dependency of mlsvc. AutoGluon gets an environment of its own,
  ``bench/.venv-autogluon``, made the first time a 120 s budget runs: its pins (xgboost-cpu 3, pandas < 2.4)
  conflict with FLAML 2.7's (xgboost < 3), and in FLAML's environment AutoGluon's XGBoost fails on
  scikit-learn 1.9. If it does not install, the benchmark says why and goes on without it (delete the folder to
  try again).
- Datasets: ``bench/quality_datasets.py`` (files inside installed packages; a fixed 25 % test split, seed 0,
  stratified for classes), cached as CSV + task.json under ``--cache``.
- mlsvc: ``.venv/bin/python -m mlsvc.cli serve`` with MLSVC_HOME in a temporary folder, a free port,
  MLSVC_WORKERS=1, MLSVC_LOCAL_ROOTS=/, OMP/OPENBLAS/MKL_NUM_THREADS=1, pinned to core 0 with ``taskset -c 0``
  (its worker processes inherit the pinning). Per table: POST /v1/datasources (the train CSV, the target, every
  column's type from task.json as ``attribute_types``, only blank cells missing), then per run POST /v1/models
  ``{name, datasource_id, model_type, time_budget_s, seed}``, then POST /v1/batch-predictions over the test CSV
  without its target, and the gzipped output is read back (BINARY: ``score``; MULTICLASS: one column per class,
  the label is the column of the highest; REGRESSION: ``score``). The training wall time is the model's
  ``created_at`` -> ``finished_at``.
- FLAML (in the bench environment, pinned to core 1): ``AutoML().fit(X, y, task, time_budget=B,
  estimator_list=["lgbm", "xgboost"], n_jobs=1, seed=s, metric=roc_auc | macro_f1 | rmse, verbose=0)``, the
  categorical columns as pandas ``category``.
- mlsvc and FLAML for one (table, budget, seed) run at the same time on their two cores, then the next; AutoGluon
  (``presets="medium_quality"``, ``time_limit=120``, ``num_cpus=1``, ``problem_type`` and ``eval_metric`` given)
  runs after the 120 s pairs of a table, alone on core 1, once per table (it takes no seed).
- Metrics on the test split: AUC (binary), macro-F1 (multiclass), RMSE (regression). Ratio: mlsvc / FLAML for AUC
  and F1, FLAML's RMSE / mlsvc's for regression: above 1 means mlsvc is better. Per table and budget the ratio is
  the median of the seeds' ratios, the spread their max - min. Prints one table per budget, the geometric mean of
  the ratios and the worst table (at 120 s also mlsvc / AutoGluon), and saves everything as JSON under
  ``bench/results/``.

Internal: ``--child flaml|autogluon --task-dir D --budget B --seed S --out F`` runs one fit of a baseline.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV = BENCH / ".venv-quality"
REQUIREMENTS = BENCH / "quality_requirements.txt"
# ISLP's own requirements (torch, pytorch_lightning, lifelines, pygam…) serve its labs; its data loader needs
# only pandas and scikit-learn, so it is installed without them.
ISLP_REQUIREMENT = "ISLP==0.6.0"
AUTOGLUON_VENV = BENCH / ".venv-autogluon"
AUTOGLUON_REQUIREMENT = "autogluon.tabular[lightgbm,catboost,xgboost,fastai]==1.6.3"
AUTOGLUON_INSTALL_TIMEOUT_S = 1200


def _bench_env_stamp() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + ISLP_REQUIREMENT.encode()).hexdigest()


def _make_bench_env() -> None:
    """Create or update bench/.venv-quality so that it holds exactly the pinned requirements."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"making {VENV} (python3 -m venv, then pip install -r {REQUIREMENTS.name}) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "--no-deps", ISLP_REQUIREMENT], check=True)
    (VENV / ".bench-stamp").write_text(_bench_env_stamp())


def _reexec_in_bench_env() -> None:
    """Run this script in bench/.venv-quality, making it first when it is missing or stale."""
    stamp = VENV / ".bench-stamp"
    if not stamp.exists() or stamp.read_text() != _bench_env_stamp():
        _make_bench_env()
    if Path(sys.prefix).resolve() != VENV.resolve():
        python = str(VENV / "bin" / "python")
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__" and "--child" not in sys.argv:
    _reexec_in_bench_env()

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402

sys.path.insert(0, str(BENCH))
import quality_datasets as qd  # noqa: E402

MLSVC_PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = BENCH / "results"
MLSVC_CORE, BASELINE_CORE = "0", "1"
AUTOGLUON_BUDGET = 120.0
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FLAML_METRICS = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
AUTOGLUON_METRICS = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "root_mean_squared_error"}
MLSVC_TYPES = {"binary": "BINARY", "multiclass": "MULTICLASS", "regression": "REGRESSION"}


# --- the baselines, each run as a child process pinned to its core ---


def _jsonable(value: Any) -> Any:
    """numpy scalars and other odd values in a config, as JSON can hold them."""
    return value.item() if hasattr(value, "item") else str(value)


def flaml_child(files: qd.TaskFiles, budget: float, seed: int) -> dict[str, Any]:
    """One FLAML fit on the train split and its test score."""
    from flaml import AutoML  # type: ignore[import-not-found]  # the bench environment's

    task = files.task["task"]
    X, y = qd.read_split(files, "train")
    X_test, y_test = qd.read_split(files, "test")
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        X,
        y,
        task="regression" if task == "regression" else "classification",
        time_budget=budget,
        estimator_list=["lgbm", "xgboost"],
        n_jobs=1,
        seed=seed,
        metric=FLAML_METRICS[task],
        verbose=0,
    )
    fit_s = time.perf_counter() - started
    if task == "binary":
        output = automl.predict_proba(X_test)[:, list(automl.classes_).index(1)]
    else:
        output = automl.predict(X_test)
    return {
        "score": qd.score(task, y_test, output),
        "fit_s": fit_s,
        "best_estimator": automl.best_estimator,
        "best_config": automl.best_config,
        "best_loss": automl.best_loss,
    }


def autogluon_child(files: qd.TaskFiles, budget: float) -> dict[str, Any]:
    """One AutoGluon fit (medium quality) on the train split and its test score."""
    from autogluon.tabular import TabularPredictor  # type: ignore[import-not-found]  # its own environment's

    task, target = files.task["task"], files.task["target"]
    X, y = qd.read_split(files, "train")
    X_test, y_test = qd.read_split(files, "test")
    with tempfile.TemporaryDirectory(prefix="ag-") as path:
        predictor = TabularPredictor(
            label=target, problem_type=task, eval_metric=AUTOGLUON_METRICS[task], path=path, verbosity=0
        )
        started = time.perf_counter()
        predictor.fit(X.assign(**{target: y}), time_limit=budget, presets="medium_quality", num_cpus=1, num_gpus=0)
        fit_s = time.perf_counter() - started
        if task == "binary":
            output = predictor.predict_proba(X_test)[1].to_numpy()
        else:
            output = predictor.predict(X_test).to_numpy()
        return {"score": qd.score(task, y_test, output), "fit_s": fit_s, "best_model": predictor.model_best}


def child_main(args: argparse.Namespace) -> None:
    folder = Path(args.task_dir)
    files = qd.TaskFiles(folder, json.loads((folder / "task.json").read_text()))
    try:
        result = (
            flaml_child(files, args.budget, args.seed) if args.child == "flaml" else autogluon_child(files, args.budget)
        )
    except Exception as error:  # the parent records the failure and goes on with the next run
        result = {"error": f"{type(error).__name__}: {error}"}
    Path(args.out).write_text(json.dumps(result, default=_jsonable))


def _start_child(
    python: Path, kind: str, files: qd.TaskFiles, budget: float, seed: int, out: Path, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        "taskset", "-c", BASELINE_CORE, str(python), str(Path(__file__).resolve()), "--child", kind,
        "--task-dir", str(files.folder), "--budget", str(budget), "--seed", str(seed), "--out", str(out),
    ]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(command, env=os.environ | ONE_THREAD, stdout=sink, stderr=subprocess.STDOUT)


def _child_result(process: subprocess.Popen[bytes], out: Path, log: Path, timeout: float) -> dict[str, Any]:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return {"error": f"no result after {timeout:.0f} s (killed)"}
    if not out.exists():
        tail = log.read_text(errors="replace")[-1500:]
        return {"error": f"exited with {process.returncode} and no result; log ends:\n{tail}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- AutoGluon's environment ---


def autogluon_python(wanted: bool) -> tuple[Path | None, str]:
    """The AutoGluon environment's python, made on first use; or None and why it is not there."""
    if not wanted:
        return None, f"AutoGluon: not run (it runs at {AUTOGLUON_BUDGET:g} s, unless --no-autogluon)"
    python, stamp, failed = (
        AUTOGLUON_VENV / "bin" / "python",
        AUTOGLUON_VENV / ".bench-stamp",
        AUTOGLUON_VENV / ".failed",
    )
    if failed.exists():
        return None, f"AutoGluon: not installable here ({failed.read_text().strip()}; delete {AUTOGLUON_VENV} to retry)"
    if stamp.exists() and stamp.read_text() == AUTOGLUON_REQUIREMENT:
        return python, f"AutoGluon: {AUTOGLUON_REQUIREMENT}"
    print(f"making {AUTOGLUON_VENV} (pip install {AUTOGLUON_REQUIREMENT}) …", flush=True)
    reason = _install_autogluon(python)
    if reason:
        AUTOGLUON_VENV.mkdir(parents=True, exist_ok=True)
        failed.write_text(reason)
        return None, f"AutoGluon: not installable here ({reason})"
    stamp.write_text(AUTOGLUON_REQUIREMENT)
    return python, f"AutoGluon: {AUTOGLUON_REQUIREMENT}"


def _install_autogluon(python: Path) -> str:
    """Install AutoGluon into its environment; the reason it failed, or '' on success."""
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(AUTOGLUON_VENV)], check=True, capture_output=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", AUTOGLUON_REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=AUTOGLUON_INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"pip install did not finish within {AUTOGLUON_INSTALL_TIMEOUT_S} s"
    except subprocess.CalledProcessError as error:
        return f"python3 -m venv failed: {error.stderr!r}"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "ERROR" in line] or done.stderr.splitlines()[-3:]
        return "pip install failed: " + " ".join(lines)[:400]
    return ""


# --- mlsvc through its REST API ---

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never through a proxy


@dataclass
class Mlsvc:
    """A running ``mlsvc serve`` pinned to its core."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=60) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path}: {error.code} {error.read().decode(errors='replace')[:800]}") from None

    def wait(self, path: str, timeout: float) -> dict[str, Any]:
        """Poll a resource until its job ended (COMPLETED or FAILED)."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.call("GET", path)
            if body["status"] in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
                return body
            time.sleep(0.25)

    def create(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        created = self.call("POST", path, body)
        return self.wait(f"{path}/{created['id']}", timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mlsvc_server(scratch: Path) -> Iterator[Mlsvc]:
    """``mlsvc serve`` from the repository's .venv, one job worker, every process pinned to MLSVC_CORE."""
    home = scratch / "mlsvc-home"
    home.mkdir()
    port = _free_port()
    env = (
        os.environ
        | ONE_THREAD
        | {
            "MLSVC_HOME": str(home),
            "MLSVC_PORT": str(port),
            "MLSVC_WORKERS": "1",
            "MLSVC_LOCAL_ROOTS": "/",
            "MLSVC_BATCH_PROCESSES": "1",
        }
    )
    log = home / "server.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            ["taskset", "-c", MLSVC_CORE, str(MLSVC_PYTHON), "-m", "mlsvc.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Mlsvc(f"http://127.0.0.1:{port}", home, process)
    try:
        _wait_healthy(server, log)
        yield server
    finally:
        _stop(process)


def _wait_healthy(server: Mlsvc, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlsvc serve exited with {server.process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with _OPENER.open(server.url + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"mlsvc serve did not answer within 120 s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it and its workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def create_datasource(server: Mlsvc, files: qd.TaskFiles) -> str:
    """The train split as a COMPLETED datasource, every column typed as task.json says."""
    task = files.task
    types = {c: ("NUMERIC" if kind == "NUMERIC" else "CATEGORICAL") for c, kind in task["columns"].items()}
    if task["task"] == "binary":
        types[task["target"]] = "BINARY"
    body = {
        "name": f"quality-{task['name']}",
        "data_uri": str(files.train),
        "target": task["target"],
        "attribute_types": types,
        "missing_values": [],  # the bench writes a missing value as a blank cell, and nothing else is one
    }
    ds = server.create("/v1/datasources", body, timeout=900)
    if ds["status"] != "COMPLETED":
        raise RuntimeError(f"datasource for {task['name']} {ds['status']}: {ds.get('message')}")
    return str(ds["id"])


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def mlsvc_train(server: Mlsvc, files: qd.TaskFiles, ds_id: str, budget: float, seed: int) -> dict[str, Any]:
    """POST /v1/models and wait: the model resource as it ended, with its training wall time."""
    task = files.task
    body = {
        "name": f"q-{task['name']}-b{budget:g}-s{seed}",
        "datasource_id": ds_id,
        "model_type": MLSVC_TYPES[task["task"]],
        "time_budget_s": float(budget),
        "seed": seed,
    }
    model = server.create("/v1/models", body, timeout=budget * 3 + 600)
    return {
        "model": model,
        "wall_s": _seconds(model.get("created_at"), model.get("finished_at")),
        "job_s": _seconds(model.get("started_at"), model.get("finished_at")),
    }


def mlsvc_score(server: Mlsvc, files: qd.TaskFiles, model: dict[str, Any], out: Path) -> float:
    """Score the test split with a batch prediction over its features and compute the test metric."""
    task = files.task
    body = {"model": model["id"], "data_uri": str(files.test_features), "output_uri": str(out)}
    bp = server.create("/v1/batch-predictions", body, timeout=900)
    if bp["status"] != "COMPLETED":
        raise RuntimeError(f"batch prediction {bp['status']}: {bp.get('message')}")
    if bp["rows_scored"] != task["test_rows"]:
        raise RuntimeError(f"batch prediction scored {bp['rows_scored']} of {task['test_rows']} rows")
    with gzip.open(bp["outputs"][0]["output"], "rt") as handle:
        frame = pd.read_csv(handle, dtype=str if task["task"] == "multiclass" else None)
    _, y_test = qd.read_split(files, "test")
    if task["task"] == "multiclass":
        scores = frame.astype(float)
        output = scores.columns.to_numpy()[scores.to_numpy().argmax(axis=1)]
    else:
        output = frame["score"].to_numpy(dtype=float)
    return qd.score(task["task"], y_test, output)


def _selected(model: dict[str, Any]) -> str | None:
    """What mlsvc's search selected, as its leaderboard or metrics say."""
    metrics = model.get("metrics") or {}
    for key in ("selected", "selected_candidate"):
        if key in metrics:
            return str(metrics[key])
    board = model.get("leaderboard") or []
    chosen = [row for row in board if row.get("selected")]
    row = chosen[0] if chosen else (board[0] if board else None)
    return str(row.get("candidate") or row.get("key") or row.get("family")) if row else None


def _warm_up(server: Mlsvc, files: qd.TaskFiles, ds_id: str) -> None:
    """One short model job, not recorded: a fresh worker's first job also pays for its imports and the registry's
    set-up (about 4 s here), which a long-lived server has behind it."""
    body = {"name": "q-warm-up", "datasource_id": ds_id, "model_type": MLSVC_TYPES[files.task["task"]]}
    server.create("/v1/models", body | {"time_budget_s": 2.0}, timeout=600)


# --- one run: mlsvc and FLAML side by side ---


def run_pair(server: Mlsvc, files: qd.TaskFiles, ds_id: str, budget: float, seed: int, scratch: Path) -> dict[str, Any]:
    """mlsvc on core 0 and FLAML on core 1 at the same time, for one (table, budget, seed)."""
    name = files.task["name"]
    work = scratch / f"{name}-b{budget:g}-s{seed}"
    work.mkdir()
    record: dict[str, Any] = {"dataset": name, "budget": budget, "seed": seed, "load_before": os.getloadavg()[0]}
    flaml = _start_child(VENV / "bin" / "python", "flaml", files, budget, seed, work / "flaml.json", work / "flaml.log")
    try:
        trained = mlsvc_train(server, files, ds_id, budget, seed)
        model = trained["model"]
        record["mlsvc"] = {"wall_s": trained["wall_s"], "job_s": trained["job_s"], "model_id": model["id"]}
        record["mlsvc"]["selected"] = _selected(model)
        if model["status"] != "COMPLETED":
            record["mlsvc"]["error"] = f"model {model['status']}: {model.get('message')}"
    except Exception as error:
        record["mlsvc"] = {"error": f"{type(error).__name__}: {error}"}
    record["flaml"] = _child_result(flaml, work / "flaml.json", work / "flaml.log", timeout=budget * 3 + 600)
    if "error" not in record["mlsvc"]:
        try:
            record["mlsvc"]["score"] = mlsvc_score(server, files, model, work / "batch")
        except Exception as error:
            record["mlsvc"]["error"] = f"{type(error).__name__}: {error}"
    record["load_after"] = os.getloadavg()[0]
    return record


def run_autogluon(python: Path, files: qd.TaskFiles, budget: float, scratch: Path) -> dict[str, Any]:
    work = scratch / f"{files.task['name']}-autogluon"
    work.mkdir()
    process = _start_child(python, "autogluon", files, budget, 0, work / "ag.json", work / "ag.log")
    result = _child_result(process, work / "ag.json", work / "ag.log", timeout=budget * 4 + 600)
    return {"dataset": files.task["name"], "budget": budget, **result}


# --- the table ---


def ratio(task: str, mlsvc: float | None, other: float | None) -> float | None:
    """Above 1 means mlsvc is better: score over score for AUC and F1, the other's RMSE over mlsvc's."""
    if mlsvc is None or other is None or not math.isfinite(mlsvc) or not math.isfinite(other) or min(mlsvc, other) <= 0:
        return None
    return other / mlsvc if task == "regression" else mlsvc / other


def geometric_mean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summarize(
    runs: list[dict[str, Any]], ag_runs: list[dict[str, Any]], tasks: dict[str, dict[str, Any]], budget: float
) -> dict[str, Any]:
    """One budget's rows (median over seeds, spread of the seeds' ratios), their geometric mean and worst table."""
    rows = []
    for name, task in tasks.items():
        mine = [r for r in runs if r["dataset"] == name and r["budget"] == budget]
        if not mine:
            continue
        pairs = [(r["mlsvc"].get("score"), r["flaml"].get("score")) for r in mine]
        ratios = [x for x in (ratio(task["task"], m, f) for m, f in pairs) if x is not None]
        walls = [r["mlsvc"]["wall_s"] / budget for r in mine if r["mlsvc"].get("wall_s") is not None]
        errors = [f"{side}: {r[side]['error']}" for r in mine for side in ("mlsvc", "flaml") if "error" in r[side]]
        row: dict[str, Any] = {
            "dataset": name,
            "task": task["task"],
            "rows": task["rows"],
            "metric": task["metric"],
            "mlsvc": _median([m for m, _ in pairs]),
            "flaml": _median([f for _, f in pairs]),
            "ratio": statistics.median(ratios) if ratios else None,
            "spread": (max(ratios) - min(ratios)) if len(ratios) > 1 else None,
            "seeds": len(ratios),
            "wall_over_budget": max(walls) if walls else None,
            "errors": errors,
        }
        ag = [a for a in ag_runs if a["dataset"] == name and a["budget"] == budget]
        if ag:
            row["autogluon"] = ag[0].get("score")
            row["vs_autogluon"] = ratio(task["task"], row["mlsvc"], ag[0].get("score"))
            if "error" in ag[0]:
                row["errors"].append(f"autogluon: {ag[0]['error']}")
        rows.append(row)
    return {"budget": budget, "rows": rows, **_aggregate(rows)}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(present) if present else None


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rated = [r for r in rows if r["ratio"] is not None]
    worst = min(rated, key=lambda r: r["ratio"]) if rated else None
    vs_ag = [r["vs_autogluon"] for r in rows if r.get("vs_autogluon") is not None]
    return {
        "geometric_mean": geometric_mean([r["ratio"] for r in rated]),
        "datasets_rated": len(rated),
        "worst": {"dataset": worst["dataset"], "ratio": worst["ratio"]} if worst else None,
        "vs_autogluon_geometric_mean": geometric_mean(vs_ag),
        "autogluon_datasets": len(vs_ag),
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.1f}"


def render(summary: dict[str, Any], header: str) -> str:
    """The printed table of one budget."""
    with_ag = any("autogluon" in r for r in summary["rows"])
    columns = (
        f"{'dataset':<16} {'task':<10} {'rows':>6} {'metric':<8} {'mlsvc':>9} {'FLAML':>9} {'ratio':>6} "
        f"{'spread':>6} {'wall/B':>6}"
    )
    if with_ag:
        columns += f" {'AutoGluon':>9} {'vs AG':>6}"
    lines = [header, columns]
    for r in summary["rows"]:
        line = (
            f"{r['dataset']:<16} {r['task']:<10} {r['rows']:>6} {r['metric']:<8} {_fmt(r['mlsvc'], 4):>9} "
            f"{_fmt(r['flaml'], 4):>9} {_fmt(r['ratio']):>6} {_fmt(r['spread']):>6} {_fmt(r['wall_over_budget'], 2):>6}"
        )
        if with_ag:
            line += f" {_fmt(r.get('autogluon'), 4):>9} {_fmt(r.get('vs_autogluon')):>6}"
        lines.append(line)
    worst = summary["worst"]
    lines.append(
        f"geometric mean of mlsvc/FLAML: {_fmt(summary['geometric_mean'])} over {summary['datasets_rated']} tables; "
        f"worst: {worst['dataset'] + ' ' + _fmt(worst['ratio']) if worst else '–'}"
    )
    if with_ag:
        lines.append(
            f"geometric mean of mlsvc/AutoGluon: {_fmt(summary['vs_autogluon_geometric_mean'])} over "
            f"{summary['autogluon_datasets']} tables where AutoGluon ran"
        )
    for r in summary["rows"]:
        lines += [f"  ! {r['dataset']}: {e.splitlines()[0][:300]}" for e in r["errors"]]
    return "\n".join(lines)


# --- the driver ---


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("flaml", "lightgbm", "xgboost", "scikit-learn", "pandas")}


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budgets", default="10,30,120", help="time budgets in seconds, comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated")
    parser.add_argument("--datasets", default="", help="tables, comma-separated (default: all; see --list)")
    parser.add_argument("--no-autogluon", action="store_true", help="do not run AutoGluon at 120 s")
    parser.add_argument("--cache", default="/tmp/mlsvc-quality-cache", help="where the split CSVs are kept")
    parser.add_argument("--list", action="store_true", help="print the tables and exit")
    parser.add_argument("--child", choices=["flaml", "autogluon"], help=argparse.SUPPRESS)
    parser.add_argument("--task-dir", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _chosen_specs(datasets: str) -> list[qd.Spec]:
    names = [n.strip() for n in datasets.split(",") if n.strip()] or [s.name for s in qd.SPECS]
    unknown = [n for n in names if n not in qd.BY_NAME]
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}; the tables are: {', '.join(qd.BY_NAME)}")
    return [qd.BY_NAME[n] for n in names]


def list_tables(cache: Path) -> None:
    for spec in qd.SPECS:
        task = qd.materialize(spec, cache).task
        dropped = "; ".join(f"{c}: {why}" for c, why in spec.dropped.items()) or "–"
        print(f"{spec.name:<16} {spec.task:<10} {task['rows']:>6} rows  target {task['target']:<8} {spec.source}")
        print(f"{'':<16} dropped: {dropped}; {spec.note}")


def main(argv: list[str]) -> None:
    args = _parse_args(argv)
    if args.child:
        child_main(args)
        return
    cache = Path(args.cache)
    if args.list:
        list_tables(cache)
        return
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = _chosen_specs(args.datasets)
    files = {spec.name: qd.materialize(spec, cache) for spec in specs}
    ag_python, ag_status = autogluon_python(AUTOGLUON_BUDGET in budgets and not args.no_autogluon)
    commit, dirty = (
        _git("rev-parse", "--short", "HEAD"),
        bool(_git("status", "--porcelain", "--", "mlsvc", "pyproject.toml")),
    )
    started = datetime.now(UTC)
    print(
        f"mlsvc {commit}{' (mlsvc/ has uncommitted changes)' if dirty else ''}; {_versions()}; {ag_status}", flush=True
    )
    runs: list[dict[str, Any]] = []
    ag_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlsvc-quality-") as tmp, mlsvc_server(Path(tmp)) as server:
        scratch = Path(tmp)
        datasources = {name: create_datasource(server, f) for name, f in files.items()}
        _warm_up(server, next(iter(files.values())), next(iter(datasources.values())))
        for budget in budgets:
            for name, f in files.items():
                for seed in seeds:
                    record = run_pair(server, f, datasources[name], budget, seed, scratch)
                    runs.append(record)
                    _progress(record, f.task)
                if ag_python is not None and budget == AUTOGLUON_BUDGET:
                    ag = run_autogluon(ag_python, f, budget, scratch)
                    ag_runs.append(ag)
                    print(
                        f"  {name} AutoGluon {budget:g}s: {_fmt(ag.get('score'), 4)} {ag.get('error', '')}", flush=True
                    )
    tasks = {name: f.task for name, f in files.items()}
    summaries = [summarize(runs, ag_runs, tasks, budget) for budget in budgets]
    header = (
        f"mlsvc {commit}{'+dirty' if dirty else ''} vs FLAML {_versions()['flaml']} (lgbm, xgboost), one core each; "
        f"seeds {','.join(map(str, seeds))}; test metric ratio > 1: mlsvc better"
    )
    text = "\n\n".join(render(s, f"budget {s['budget']:g} s — {header}") for s in summaries)
    print("\n" + text, flush=True)
    _save(started, commit, dirty, args, ag_status, runs, ag_runs, summaries, text)


def _progress(record: dict[str, Any], task: dict[str, Any]) -> None:
    m, f = record["mlsvc"], record["flaml"]
    r = ratio(task["task"], m.get("score"), f.get("score"))
    wall = f"{m['wall_s']:.1f}s" if m.get("wall_s") is not None else "–"
    print(
        f"  {record['dataset']:<16} b={record['budget']:g} s={record['seed']} mlsvc {_fmt(m.get('score'), 4)} "
        f"({wall}, {m.get('selected')}) FLAML {_fmt(f.get('score'), 4)} ({f.get('best_estimator')}) ratio {_fmt(r)}"
        + "".join(
            f"  ! {side}: {record[side]['error'].splitlines()[0][:200]}"
            for side in ("mlsvc", "flaml")
            if "error" in record[side]
        ),
        flush=True,
    )


def _save(
    started: datetime,
    commit: str,
    dirty: bool,
    args: argparse.Namespace,
    ag_status: str,
    runs: list[dict[str, Any]],
    ag_runs: list[dict[str, Any]],
    summaries: list[dict[str, Any]],
    text: str,
) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"quality-{started.strftime('%Y%m%dT%H%M%SZ')}-{commit}.json"
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "commit": commit,
        "dirty": dirty,
        "arguments": {
            "budgets": args.budgets,
            "seeds": args.seeds,
            "datasets": args.datasets,
            "no_autogluon": args.no_autogluon,
        },
        "versions": _versions(),
        "autogluon": ag_status,
        "summaries": summaries,
        "runs": runs,
        "autogluon_runs": ag_runs,
        "table": text,
    }
    path.write_text(json.dumps(document, indent=2, default=_jsonable))
    print(f"\nsaved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
