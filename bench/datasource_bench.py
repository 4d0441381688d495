"""Benchmark: a datasource with statistics over a 1,000,000-row, 20-column CSV in loopback S3, against pandas.

Run by hand, not in CI:

    .venv/bin/python bench/datasource_bench.py                  # 1,000,000 rows, one round
    .venv/bin/python bench/datasource_bench.py --rows 100000    # a quick look
    .venv/bin/python bench/datasource_bench.py --repeat 3 --profile

What it does:

1. starts an S3 protocol server (moto's ``ThreadedMotoServer``) on loopback in a process of its own, so
   its CPU and memory never count against a measured process;
2. writes a deterministic CSV (``--seed``): a unique id, NUMERIC, CATEGORICAL (4 to ~3,000 levels),
   BINARY (0/1, Yes/No, true/false), a short free-text TEXT column and a BINARY target, ~150 bytes a row
   (150.6 MB for 1,000,000 rows), and uploads it with boto3;
3. measures, each run in a fresh subprocess so that its peak RSS (VmHWM) is its own, and the runs of
   one round interleaved so that all see the same machine at the same time:

   - ``transfer``: the object's bytes read from S3 and thrown away: the floor both others stand on;
   - ``pandas``: the baseline, ``pd.read_csv`` of the object's GetObject body into one DataFrame;
   - ``mlsvc``: the service's own code path without HTTP: ``Service.create_datasource`` (schema inferred,
     target ``churned``, statistics on) and one ``Worker.run_once``, then the resource read back
     (checked COMPLETED with every row counted). The process first takes its share of the cores as a
     worker process does (``--worker-siblings``), and has the job's modules and its S3 client ready, as
     a worker that has run a job before.

It prints the wall time and peak RSS of each, the ratios time(mlsvc)/time(pandas) and
peak RSS(mlsvc)/file size, where mlsvc's time went (cheap timers around its phases) and its memory as
each chunk came out. ``--profile`` adds one more mlsvc run under cProfile (not counted in the figures)
and prints its top functions. The figures are in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BUCKET = "mlsvc-bench"
TARGET = "churned"
CHUNK_ROWS = 100_000
HERE = Path(__file__).resolve()

# --- the data -------------------------------------------------------------------------------------------

_STATE_CODES = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"
)
_VOCABULARY = (
    "app slow fast crash login billing charge refund support agent call wait hold price plan upgrade "
    "downgrade cancel renew contract fee late payment card bank email notice screen update bug error signal "
    "coverage outage network speed data roaming travel family friend discount offer promo loyal happy "
    "unhappy angry great good bad terrible excellent okay fine helpful rude polite quick long time hour day "
    "week month year again never always still please thanks issue problem fixed broken works phone device "
    "tablet router modem install technician visit store online chat portal account password reset locked "
    "access new old switch competitor cheaper expensive value worth bill statement error charged twice "
    "credit balance due overdue reminder text message voicemail international minutes"
)
_STATES = _STATE_CODES.split()
_WORDS = _VOCABULARY.split()


def write_csv(path: Path, rows: int, seed: int) -> None:
    """The benchmark's CSV, the same bytes for the same rows and seed (one generator, drawn chunk by chunk)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = np.array(_WORDS, dtype=object)
    cities = np.array([f"city_{i:04d}" for i in range(3000)], dtype=object)
    with path.open("w", newline="", encoding="utf-8") as out:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            age = rng.integers(18, 91, n)
            tenure = rng.integers(0, 121, n)
            monthly = np.round(rng.gamma(4.0, 18.0, n) + 5.0, 2)
            total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.1, n), 2)
            total[rng.random(n) < 0.01] = np.nan
            calls = rng.poisson(1.5, n)
            credit = pd.array(rng.integers(300, 851, n), dtype="Int64")
            credit[rng.random(n) < 0.02] = pd.NA
            plan = rng.choice(
                np.array(["basic", "standard", "premium", "family"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1]
            )
            payment = rng.choice(
                np.array(["credit_card", "bank_transfer", "electronic_check", "mailed_check", "paypal"], dtype=object),
                n,
            )
            device = rng.choice(
                np.array(["android", "iphone", "ipad", "pixel", "galaxy", "laptop", "desktop", "other"], dtype=object),
                n,
            )
            city = cities[np.minimum(rng.zipf(1.3, n) - 1, len(cities) - 1)]
            partner = rng.choice(np.array(["Yes", "No"], dtype=object), n)
            paperless = rng.choice(np.array(["true", "false"], dtype=object), n)
            lengths = rng.integers(3, 10, n)
            picks = words[rng.integers(0, len(words), (n, 9))]
            comment = np.array([" ".join(r[:k]) for r, k in zip(picks, lengths, strict=True)], dtype=object)
            quoted = rng.random(n) < 0.03  # a comma inside: RFC 4180 quotes these fields
            comment[quoted] = [c.replace(" ", ", ", 1) for c in comment[quoted]]
            comment[rng.random(n) < 0.08] = None
            logit = -2.0 + 0.9 * (plan == "basic") + 0.35 * calls - 0.015 * tenure + 0.004 * (monthly - 70)
            churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            frame = pd.DataFrame(
                {
                    "customer_id": [f"C{i:07d}" for i in range(start + 1, start + n + 1)],
                    "age": age,
                    "tenure_months": tenure,
                    "monthly_charges": monthly,
                    "total_charges": total,
                    "account_balance": np.round(rng.normal(150.0, 250.0, n), 2),
                    "support_calls": calls,
                    "latitude": np.round(rng.uniform(25.0, 49.0, n), 5),
                    "longitude": np.round(rng.uniform(-124.0, -67.0, n), 5),
                    "credit_score": credit,
                    "plan": plan,
                    "state": rng.choice(np.array(_STATES, dtype=object), n),
                    "payment_method": payment,
                    "device": device,
                    "city": city,
                    "is_senior": (age >= 65).astype(np.int64),
                    "has_partner": partner,
                    "paperless_billing": paperless,
                    "comment": comment,
                    TARGET: churned,
                }
            )
            frame.to_csv(out, index=False, header=start == 0, lineterminator="\n")


# --- the S3 server, in a process of its own ---------------------------------------------------------------


def serve() -> None:
    """Run moto's S3 server on a free loopback port, print ``host port``, and stop when stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(host, port, flush=True)
    sys.stdin.read()
    server.stop()


def aws_env(endpoint: str, scratch: Path) -> dict[str, str]:
    """The children's environment: the loopback endpoint and dummy credentials, nothing from a real AWS set-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLSVC_"))}
    none = str(scratch / "no-aws-config")
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=none,
        AWS_SHARED_CREDENTIALS_FILE=none,
    )
    return env


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


# --- the measured children ----------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_now_kib() -> int:
    return _status_kib("VmRSS")


def _peak_kib() -> int:
    # VmHWM, this process's own high-water mark. Not ru_maxrss: Linux carries that across exec, so a child
    # would inherit the driver's peak (the driver holds pandas and the generated data).
    return _status_kib("VmHWM")


def child_transfer(uri: str) -> dict[str, Any]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    client = s3_client()
    rss0, hwm0 = _rss_now_kib(), _peak_kib()
    t0 = time.perf_counter()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    size = 0
    while block := body.read(1 << 20):
        size += len(block)
    return {"seconds": time.perf_counter() - t0, "rss_before_kib": rss0, "peak_before_kib": hwm0, "bytes": size}


def child_pandas(uri: str) -> dict[str, Any]:
    import pandas as pd

    bucket, key = uri[len("s3://") :].split("/", 1)
    client = s3_client()
    rss0, hwm0 = _rss_now_kib(), _peak_kib()
    t0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
    frame = pd.read_csv(client.get_object(Bucket=bucket, Key=key)["Body"])
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu0,
        "thread_cpu_seconds": time.thread_time() - thread0,
        "rss_before_kib": rss0,
        "peak_before_kib": hwm0,
        "rows": len(frame),
        "columns": frame.shape[1],
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
    }


class _Phases:
    """Wall-clock timers wrapped around a few functions of the datasource job: a handful of calls per
    16 MiB chunk, so they cost nothing measurable, and they change no behaviour."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.missing: list[str] = []
        self.s3_bytes = 0
        # (VmRSS KiB, live Python objects, bytes read from S3 so far) as each raw chunk comes out
        self.memory: list[tuple[int, int, int]] = []

    def reset(self) -> None:
        """Forget what a warm-up job did."""
        self.seconds.clear()
        self.calls.clear()
        self.memory.clear()
        self.s3_bytes = 0

    def sample_memory(self) -> None:
        self.memory.append((_rss_now_kib(), sys.getallocatedblocks(), self.s3_bytes))

    def _wrap_s3_reads(self, cls: Any, name: str) -> None:
        inner = cls.readinto

        def readinto(reader: Any, buffer: Any) -> int:
            t0 = time.perf_counter()
            try:
                n = inner(reader, buffer)
                self.s3_bytes += n
                return n
            finally:
                self._add(name, time.perf_counter() - t0)

        cls.readinto = readinto

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr, None)
        if inner is None:  # the code moved on; time what is still there
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - t0)

        setattr(owner, attr, timed)

    def wrap_generator(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr, None)
        if inner is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            iterator = inner(*args, **kwargs)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self._add(name, time.perf_counter() - t0)
                    return
                self._add(name, time.perf_counter() - t0)
                self.sample_memory()
                yield item

        setattr(owner, attr, timed)

    def _wrap_open_csv(self, module: Any, name: str) -> None:
        inner = module.open_csv
        phases = self

        class _TimedReader:
            def __init__(self, reader: Any) -> None:
                self.reader = iter(reader)

            def __iter__(self) -> Any:
                return self

            def __next__(self) -> Any:
                t0 = time.perf_counter()
                try:
                    return next(self.reader)
                finally:
                    phases._add(name, time.perf_counter() - t0)

        def open_csv(*args: Any, **kwargs: Any) -> _TimedReader:
            t0 = time.perf_counter()  # open_csv reads and parses the first block itself
            try:
                return _TimedReader(inner(*args, **kwargs))
            finally:
                phases._add(name, time.perf_counter() - t0)

        module.open_csv = open_csv

    def install(self) -> None:
        import mlsvc.datasources.job as job
        import mlsvc.datasources.reader as reader
        import mlsvc.datasources.scan as scan
        import mlsvc.datasources.statistics as stats
        import mlsvc.metadata.queue as queue
        import mlsvc.objects.s3 as storage

        self.wrap(job, "settle_schema", "schema: settle (infer from the head)")
        self.wrap(job, "read_layout", "schema: read_layout (header again)")
        self.wrap(storage.S3ObjectStore, "list_data_files", "storage: list_data_files")
        self._wrap_s3_reads(storage._S3Reader, "  of which S3 body reads (_S3Reader.readinto)")
        self._wrap_open_csv(reader.pacsv, "  of which arrow CSV batches (incl. S3 reads)")
        self.wrap_generator(scan, "iter_chunks", "scan: iter_chunks (S3 read, arrow parse, checks)")
        self.wrap(scan, "select_rows", "scan: select_rows (rearrangement)")
        self.wrap(scan, "coerce_columns", "scan: coerce_columns (tokens -> typed arrays)")
        self.wrap(scan.ScanCounts, "note_invalid", "scan: ScanCounts.note_invalid")
        self.wrap(stats.StatisticsAccumulator, "update_columns", "statistics: StatisticsAccumulator.update_columns")
        for cls in ("_NumericStats", "_BinaryStats", "_CategoricalStats", "_TextStats"):
            self.wrap(getattr(stats, cls), "update", f"  of which {cls}.update")
        self.wrap(stats._RowReservoir, "offer", "  of which _RowReservoir.offer")
        self.wrap(stats._CoMoments, "add", "  of which _CoMoments.add (pearson)")
        self.wrap(stats.StatisticsAccumulator, "result", "statistics: StatisticsAccumulator.result")
        self.wrap(queue.SqlJobQueue, "report", "store: SqlJobQueue.report (progress)")
        self.wrap(queue.SqlJobQueue, "complete", "store: SqlJobQueue.complete (write the result)")


def _reset_peak() -> bool:
    """Start VmHWM over from the current RSS (Linux: /proc/self/clear_refs), so a later peak is the job's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_mlsvc(
    uri: str, rows: int, mode: str, siblings: int | None, warm_up: tuple[str, int] | None = None
) -> dict[str, Any]:
    from mlsvc.config import Settings
    from mlsvc.jobs.worker import _share_cores

    # As a worker process does before numpy is imported: its share of the cores for native thread pools.
    # `mlsvc serve` starts MLSVC_WORKERS (2) worker processes; `mlsvc worker` is one process (siblings 1).
    if "numpy" in sys.modules:
        raise RuntimeError("numpy was imported before the worker's thread settings")
    _share_cores(siblings or Settings.from_env().workers)
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS")
    # Everything the job imports is imported first, as in a worker that has run a job before; pandas' own
    # import is outside the baseline's timing too.
    import mlsvc.datasources.job
    import mlsvc.objects.s3
    from mlsvc.jobs.worker import Worker
    from mlsvc.metadata.sql import SqlMetadataStore
    from mlsvc.resources import DataSourceCreate, Status
    from mlsvc.service import Service

    profile = mode == "profile"
    phases = _Phases() if mode == "phases" else None
    if phases:
        phases.install()
    with tempfile.TemporaryDirectory(prefix="mlsvc-bench-home-") as home:
        os.environ["MLSVC_HOME"] = home
        t_setup = time.perf_counter()
        settings = Settings.from_env()
        store = SqlMetadataStore(settings.database_url)
        service = Service(settings, store)
        worker = Worker(settings, store)
        # The S3 client is made once per worker process and reused; a warm worker has one already, and the
        # baseline makes its own before its timing starts too.
        mlsvc.objects.s3.client()
        if warm_up:  # a worker that has run a job before: its allocators and libraries are warm
            import gc

            warm_uri, warm_rows = warm_up
            made, _ = service.datasources.create(DataSourceCreate(data_uri=warm_uri, target=TARGET))
            warm_ran = worker.run_once()
            warm = service.datasources.get(made.id)
            if not warm_ran or warm.status is not Status.COMPLETED or warm.row_count != warm_rows:
                raise SystemExit(f"the warm-up job did not complete: {warm.status} {warm.message}")
            del made, warm
            gc.collect()
            if not _reset_peak():
                raise SystemExit("--warm-up-rows needs /proc/self/clear_refs to start the peak RSS over")
            if phases:
                phases.reset()
        setup_seconds = time.perf_counter() - t_setup
        rss0, hwm0 = _rss_now_kib(), _peak_kib()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        created, _ = service.datasources.create(DataSourceCreate(data_uri=uri, target=TARGET))
        ran = worker.run_once()
        ds = service.datasources.get(created.id)
        seconds = time.perf_counter() - t0
        cpu_seconds, thread_cpu_seconds = time.process_time() - cpu0, time.thread_time() - thread0
        if profiler:
            profiler.disable()
        store.dispose()
    import gc

    del worker, service, store
    gc.collect()
    rss_after, objects_after = _rss_now_kib(), sys.getallocatedblocks()
    if not ran or ds.status is not Status.COMPLETED:
        raise SystemExit(f"the datasource job did not complete: ran={ran} status={ds.status} {ds.message}")
    if ds.row_count != rows or ds.statistics is None:
        raise SystemExit(
            f"expected {rows} rows with statistics; got row_count={ds.row_count}, "
            f"statistics={'present' if ds.statistics else 'absent'}"
        )
    schema = ds.data_schema
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "thread_cpu_seconds": thread_cpu_seconds,
        "setup_seconds": setup_seconds,
        "rss_before_kib": rss0,
        "peak_before_kib": hwm0,
        "rows": ds.row_count,
        "used_rows": ds.used_row_count,
        "invalid_rows": ds.invalid_row_count,
        "row_id": schema.rowId if schema else None,
        "types": {a.attributeName: a.attributeType.value for a in schema.attributes} if schema else {},
        "phases": phases.seconds if phases else None,
        "phases_not_found": phases.missing if phases else None,
        "phase_calls": phases.calls if phases else None,
        "memory_at_chunks": phases.memory if phases else None,
        "rss_after_kib": rss_after,
        "objects_after": objects_after,
        "blas_threads": blas_threads,
        "warm_up_rows": warm_up[1] if warm_up else 0,
    }
    if profiler:
        import io
        import pstats

        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(25)
            out[f"profile_{order}"] = text.getvalue()
    return out


def child_main(
    kind: str,
    uri: str,
    rows: int,
    result_path: str,
    mode: str,
    siblings: int | None,
    warm_up: tuple[str, int] | None = None,
) -> None:
    if kind == "transfer":
        result = child_transfer(uri)
    elif kind == "pandas":
        result = child_pandas(uri)
    else:
        result = child_mlsvc(uri, rows, mode, siblings, warm_up)
    result["peak_rss_kib"] = _peak_kib()
    Path(result_path).write_text(json.dumps(result))


# --- the driver ---------------------------------------------------------------------------------------------


def run_child(
    kind: str,
    uri: str,
    rows: int,
    env: dict[str, str],
    scratch: Path,
    mode: str = "plain",
    siblings: int | None = None,
    warm_up: tuple[str, int] | None = None,
) -> dict[str, Any]:
    result_path = scratch / f"{kind}-{time.monotonic_ns()}.json"
    command = [
        sys.executable,
        str(HERE),
        "--child",
        kind,
        "--uri",
        uri,
        "--rows",
        str(rows),
        "--result",
        str(result_path),
        "--mode",
        mode,
    ]
    if siblings:
        command += ["--worker-siblings", str(siblings)]
    if warm_up and kind == "mlsvc":
        command += ["--warm-up-uri", warm_up[0], "--warm-up-rows", str(warm_up[1])]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=HERE.parent.parent, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"the {kind} run failed (exit {done.returncode})")
    result = json.loads(result_path.read_text())
    result["process_seconds"] = wall
    return result


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(args: argparse.Namespace, size: int, results: dict[str, list[dict[str, Any]]]) -> None:
    size_kib = size / 1024
    print()
    print(
        f"CSV: {args.rows:,} rows x 20 columns, {size / 2**20:,.1f} MiB ({size:,} bytes), seed {args.seed}; "
        f"{len(results['pandas'])} round(s); medians; python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    first = results["mlsvc"][0]
    print(f"code: {_code_state()}; mlsvc as a worker process with OPENBLAS_NUM_THREADS={first['blas_threads']}")
    if first.get("warm_up_rows"):
        print(
            f"mlsvc ran a job on {first['warm_up_rows']:,} rows first (a warm worker); its RSS before and peak are "
            "counted from after that job"
        )
    else:
        print("the job is the mlsvc process's first (a cold worker: allocators and libraries warm up within it)")
    print(f"inferred: rowId={first['row_id']}, types: " + ", ".join(f"{n}={t[:3]}" for n, t in first["types"].items()))
    print()
    header = f"{'run':<10}{'wall s':>10}{'peak RSS':>12}{'RSS before':>12}{'peak-before':>13}{'peak/file':>11}"
    print(header)
    print("-" * len(header))
    rows = {}
    for kind in ("transfer", "pandas", "mlsvc"):
        runs = results[kind]
        seconds = median([r["seconds"] for r in runs])
        peak = median([r["peak_rss_kib"] for r in runs])
        before = median([r["rss_before_kib"] for r in runs])
        rows[kind] = (seconds, peak, before)
        print(
            f"{kind:<10}{seconds:>10.2f}{mib(peak):>12}{mib(before):>12}{mib(peak - before):>13}"
            f"{peak / size_kib:>11.2f}"
        )
    print()
    t_pd, m_pd, _ = rows["pandas"]
    t_ml, m_ml, b_ml = rows["mlsvc"]
    print(f"time(mlsvc) / time(pandas)        = {t_ml / t_pd:.2f}")
    print(f"peak RSS(mlsvc) / file size       = {m_ml / size_kib:.2f}")
    print(f"peak RSS(mlsvc) / peak RSS(pandas) = {m_ml / m_pd:.2f}")
    print(f"(mlsvc peak - its RSS before the job) / file size = {(m_ml - b_ml) / size_kib:.2f}")
    print(f"transfer alone / time(pandas)     = {rows['transfer'][0] / t_pd:.2f}")
    cpu = {
        kind: (
            median([r["cpu_seconds"] for r in results[kind]]),
            median([r["thread_cpu_seconds"] for r in results[kind]]),
        )
        for kind in ("pandas", "mlsvc")
    }
    print(
        f"CPU s, whole process / calling thread: pandas {cpu['pandas'][0]:.2f} / {cpu['pandas'][1]:.2f}, "
        f"mlsvc {cpu['mlsvc'][0]:.2f} / {cpu['mlsvc'][1]:.2f} (pyarrow reads and parses in a thread of its own)"
    )
    if len(results["pandas"]) > 1:
        for kind in ("transfer", "pandas", "mlsvc"):
            print(
                f"  {kind} runs: " + ", ".join(f"{r['seconds']:.2f}s/{mib(r['peak_rss_kib'])}" for r in results[kind])
            )
    phases = [r["phases"] for r in results["mlsvc"] if r.get("phases")]
    if phases:
        print()
        print(f"mlsvc phases (median wall s of {len(phases)} run(s); indented lines are inside the line above):")
        names = list(phases[0])
        order = sorted(names, key=lambda n: (n.startswith("  "), -median([p.get(n, 0.0) for p in phases])))
        top = [n for n in order if not n.startswith("  ")]
        calls = results["mlsvc"][0]["phase_calls"]
        accounted = 0.0
        for name in top:
            value = median([p.get(name, 0.0) for p in phases])
            accounted += value
            print(f"  {name:<58}{value:>8.2f}  ({calls[name]} calls)")
            for sub in _children_of(name, names):
                sub_value = median([p.get(sub, 0.0) for p in phases])
                print(f"  {sub:<58}{sub_value:>8.2f}  ({calls[sub]} calls)")
        print(f"  {'other (scan itself, service, worker, store)':<58}{t_ml - accounted:>8.2f}")
        missing = results["mlsvc"][0].get("phases_not_found")
        if missing:
            print(f"  (not timed, no longer in the code: {', '.join(missing)})")
    memory = [r for r in results["mlsvc"] if r.get("memory_at_chunks")]
    if memory:
        run = memory[0]
        samples = run["memory_at_chunks"]
        worst = max(samples)
        read_at_first = samples[0][2]
        print()
        print(
            f"mlsvc memory (first run; sampled as each raw chunk comes out of iter_chunks, {len(samples)} chunks, "
            f"{size / max(1, len(samples)) / 2**20:,.1f} MiB of CSV each):"
        )
        print(
            f"  RSS before the job {mib(run['rss_before_kib'])}; at chunk 1 {mib(samples[0][0])} with "
            f"{samples[0][1] / 1e6:.2f}M live Python objects; highest at a chunk {mib(worst[0])}"
            + (f" with {max(s[1] for s in samples) / 1e6:.2f}M objects" if len(samples) > 1 else "")
        )
        print(
            f"  read from S3 when chunk 1 came out: {read_at_first / 2**20:,.1f} MiB, {read_at_first / size:.0%} of "
            "the file (two ~1 MiB header peeks included): pyarrow's CSV reader reads ahead in a thread of its own"
        )
        print(
            f"  after the job, everything released and collected: RSS {mib(run['rss_after_kib'])} with "
            f"{run['objects_after'] / 1e6:.2f}M live Python objects (the rest is held by the allocators)"
        )


def _code_state() -> str:
    """The commit measured, and whether the package had uncommitted edits (others work in this tree too)."""
    root = HERE.parent.parent

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "mlsvc").splitlines()]
    return f"commit {head}" + (f" + uncommitted edits in {', '.join(dirty)}" if dirty else ", clean")


def _children_of(name: str, names: list[str]) -> list[str]:
    groups = {
        "scan: iter_chunks": ("_S3Reader", "arrow CSV"),
        "statistics: StatisticsAccumulator.update": ("Stats.update", "_RowReservoir", "_CoMoments"),
    }
    for prefix, markers in groups.items():
        if name.startswith(prefix):
            return [n for n in names if n.startswith("  ") and any(m in n for m in markers)]
    return []


def _csv(folder: Path, rows: int, seed: int) -> Path:
    """The benchmark's CSV of ``rows`` rows, written once into ``folder``."""
    path = folder / f"bench-{rows}-{seed}.csv"
    if not path.exists():
        t0 = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_csv(partial, rows, seed)
        partial.replace(path)
        print(f"wrote {path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (transfer, pandas, mlsvc); medians")
    parser.add_argument("--profile", action="store_true", help="one more mlsvc run under cProfile, printed")
    parser.add_argument(
        "--worker-siblings",
        type=int,
        default=None,
        help="run mlsvc as one of N worker processes on this host (sets its BLAS/OpenMP threads to "
        "CPUs // N, as the worker does); default MLSVC_WORKERS (2), as `mlsvc serve` starts them; "
        "1 is a lone `mlsvc worker`",
    )
    parser.add_argument(
        "--no-phases",
        action="store_true",
        help="no timers around mlsvc's phases (they cost nothing measurable; this shows it)",
    )
    parser.add_argument(
        "--csv-cache",
        type=Path,
        default=None,
        help="a folder to keep the generated CSV in and reuse it from (by rows and seed)",
    )
    parser.add_argument(
        "--warm-up-rows",
        type=int,
        default=0,
        help="before the measured job, the mlsvc process runs one on a file of this many rows (the "
        "same generator), as a worker that has run a job before; peak RSS is then counted from "
        "after it (default 0: the job is the process's first)",
    )
    parser.add_argument("--warm-up-uri", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("transfer", "pandas", "mlsvc"), help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("plain", "phases", "profile"), default="plain", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.child:
        warm = (args.warm_up_uri, args.warm_up_rows) if args.warm_up_uri else None
        child_main(args.child, args.uri, args.rows, args.result, args.mode, args.worker_siblings, warm)
        return

    with tempfile.TemporaryDirectory(prefix="mlsvc-bench-") as tmp:
        scratch = Path(tmp)
        folder = args.csv_cache or scratch
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = _csv(folder, args.rows, args.seed)
        warm_path = _csv(folder, args.warm_up_rows, args.seed) if args.warm_up_rows else None
        size = csv_path.stat().st_size

        server = subprocess.Popen(
            [sys.executable, str(HERE), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            host, port = server.stdout.readline().split()
            env = aws_env(f"http://{host}:{port}", scratch)
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            from boto3.s3.transfer import TransferConfig

            client = s3_client()
            client.create_bucket(Bucket=BUCKET)
            key = csv_path.name
            t0 = time.perf_counter()
            client.upload_file(
                str(csv_path),
                BUCKET,
                key,
                Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20),
            )
            print(f"uploaded s3://{BUCKET}/{key} ({size:,} bytes) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            uri = f"s3://{BUCKET}/{key}"
            warm_up = None
            if warm_path is not None:
                client.upload_file(str(warm_path), BUCKET, warm_path.name)
                warm_up = (f"s3://{BUCKET}/{warm_path.name}", args.warm_up_rows)
            results: dict[str, list[dict[str, Any]]] = {"transfer": [], "pandas": [], "mlsvc": []}
            for round_ in range(args.repeat):
                for kind in ("transfer", "pandas", "mlsvc"):
                    mode = "phases" if kind == "mlsvc" and not args.no_phases else "plain"
                    result = run_child(kind, uri, args.rows, env, scratch, mode, args.worker_siblings, warm_up)
                    results[kind].append(result)
                    print(
                        f"round {round_ + 1}: {kind:<8} {result['seconds']:7.2f}s  peak {mib(result['peak_rss_kib'])}",
                        file=sys.stderr,
                    )
            report(args, size, results)
            if args.profile:
                profiled = run_child(
                    "mlsvc",
                    uri,
                    args.rows,
                    env,
                    scratch,
                    mode="profile",
                    siblings=args.worker_siblings,
                    warm_up=warm_up,
                )
                print()
                print(
                    f"mlsvc under cProfile ({profiled['seconds']:.2f}s with the profiler's overhead; "
                    "not in the figures above)"
                )
                print(profiled["profile_cumulative"])
                print(profiled["profile_tottime"])
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
