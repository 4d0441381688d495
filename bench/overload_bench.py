"""Benchmark: overload. The real ``mlsvc serve`` answering real-time predicts under 1×, 2× and 5× the load it can
carry, with load shedding (the default bound on requests in flight) against the same server without it
(MLSVC_MAX_IN_FLIGHT=1000000), side by side in one run.

Run by hand, not in CI:

    .venv/bin/python bench/overload_bench.py                  # 3 rounds, 8 s per level per server
    .venv/bin/python bench/overload_bench.py --rounds 1 --seconds 3   # a quick look
    .venv/bin/python bench/overload_bench.py --batch 200   # 200 records per request: a client core outpaces 5x

What it does:

- Starts two ``mlsvc serve`` processes on one MLSVC_HOME (MLSVC_WORKERS=1 for the first, 0 for the second): one
  with the default MLSVC_MAX_IN_FLIGHT (the shedding server), one with it at 1,000,000 (the baseline, which
  queues). Trains the churn example once through REST (``time_budget_s`` 10), then pins every thread of both
  servers to core 1; the client runs on core 0.
- The client is asyncio over raw keep-alive HTTP/1.1 connections (one request in flight per connection), so
  that it can hold hundreds of connections on one core; it records every answer's status and latency.
- Capacity: the requests/s the shedding server answers when ``--capacity-c`` connections keep it busy (closed
  loop). Then requests arrive at ``--levels`` × that rate (1×, 2×, 5×) whatever the server does (open loop, a
  new connection whenever none is idle): past its bound a request waits in the server's queue (baseline) or is
  refused at once with 503 and Retry-After (shedding).
- For every level and server: goodput (200s per second), 503s per second, and p50 / p99 / max latency of the
  accepted (200) answers; medians over rounds, the servers interleaved within a round. Also checks that
  /healthz answers during the 5× level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench's own helpers, beside this file.
from http_predict_bench import (
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    can_pin,
    free_port,
    pin_tree,
    records,
    start,
    stop,
    train_churn,
)


@dataclass
class Level:
    """What one server answered at one level of load."""

    connections: int
    seconds: float
    ok_latencies: list[float] = field(default_factory=list)
    shed: int = 0
    other: int = 0
    late: int = 0
    until: float = float("inf")

    def record(self, status: int, elapsed: float) -> None:
        if time.monotonic() > self.until:
            self.late += 1  # answered after the window: counts against goodput, like a timed-out request
        elif status == 200:
            self.ok_latencies.append(elapsed)
        elif status == 503:
            self.shed += 1
        else:
            self.other += 1

    def row(self) -> dict[str, float]:
        ok = sorted(self.ok_latencies)
        return {
            "goodput": len(ok) / self.seconds,
            "shed_per_s": self.shed / self.seconds,
            "late": float(self.late),
            "other": float(self.other),
            "p50_ms": 1000 * _pct(ok, 0.50),
            "p99_ms": 1000 * _pct(ok, 0.99),
            "max_ms": 1000 * (ok[-1] if ok else float("nan")),
        }


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _one_connection(port: int, requests: list[bytes], until: float, level: Level) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            status, close = await _read_response(reader)
            level.record(status, time.perf_counter() - started)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of one HTTP/1.1 response, its body read and dropped; whether the server closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"


def _requests(model: str, bodies: list[bytes]) -> list[bytes]:
    return [
        f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    ]


async def _closed_loop(port: int, requests: list[bytes], connections: int, seconds: float) -> Level:
    level = Level(connections, seconds)
    until = time.monotonic() + seconds
    await asyncio.gather(*(_one_connection(port, requests, until, level) for _ in range(connections)))
    return level


class _Pool:
    """Idle keep-alive connections; a new one is opened when none is idle (an arrival never waits for one)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _arrival(pool: _Pool, request: bytes, level: Level) -> None:
    for attempt in range(2):
        reader, writer = await pool.take()
        started = time.perf_counter()
        try:
            writer.write(request)
            status, close = await _read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()  # an idle connection the server closed (keep-alive timeout): once more on a new one
            if attempt == 0:
                continue
            level.other += 1
            return
        break
    level.record(status, time.perf_counter() - started)
    if close:
        writer.close()
    else:
        pool.idle.append((reader, writer))


async def _open_loop(port: int, requests: list[bytes], rate: float, seconds: float) -> tuple[Level, int]:
    """Requests arriving at ``rate`` per second for ``seconds``, whatever the server does (open loop); the level,
    and the status /healthz answered half-way through."""
    level, pool, tasks = Level(0, seconds), _Pool(port), []
    started = time.monotonic()
    level.until = started + seconds + 1.0  # an answer more than 1 s after the last arrival is too late
    health = 0
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_arrival(pool, requests[i % len(requests)], level)))
        if i == int(rate * seconds / 2):
            health = await _health(port)
    await asyncio.gather(*tasks)
    level.connections = pool.opened
    pool.close()
    return level, health


async def _health(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _ = await _read_response(reader)
    writer.close()
    return status


def run(args: argparse.Namespace) -> None:
    import orjson

    if can_pin():
        os.sched_setaffinity(0, {CLIENT_CORE})
    logs = Path(tempfile.mkdtemp(prefix="mlsvc-overload-"))
    home = logs / "home"
    base_env = {**os.environ, "MLSVC_HOME": str(home), "MLSVC_LOCAL_ROOTS": str(ROOT), "MLSVC_BATCH_PROCESSES": "1"}
    base_env.pop("MLSVC_MAX_IN_FLIGHT", None)
    ports = {"shedding": free_port(), "queueing": free_port()}
    cmd = [sys.executable, "-m", "mlsvc.cli", "serve"]
    servers = {
        "shedding": start(
            "shedding",
            cmd,
            {**base_env, "MLSVC_PORT": str(ports["shedding"]), "MLSVC_WORKERS": "1"},
            ports["shedding"],
            "/v1/models",
            "/healthz",
            logs,
        ),
    }
    try:
        model = train_churn(servers["shedding"].url)
        servers["queueing"] = start(
            "queueing",
            cmd,
            {**base_env, "MLSVC_PORT": str(ports["queueing"]), "MLSVC_WORKERS": "0", "MLSVC_MAX_IN_FLIGHT": "1000000"},
            ports["queueing"],
            "/v1/models",
            "/healthz",
            logs,
        )
        if can_pin():
            for server in servers.values():
                pin_tree(server.process.pid, SERVER_CORE)
        rows = records(model["features"], max(200, args.batch * 5))
        if args.batch > 1:  # heavier requests, so that one client core can offer 5x what the server carries
            bodies = [orjson.dumps({"records": rows[i : i + args.batch]}) for i in range(0, len(rows), args.batch)]
        else:
            bodies = [orjson.dumps({"record": r}) for r in rows]
        requests = _requests(model["id"], bodies)
        for port in ports.values():  # warm both: the model loaded, the paths compiled
            asyncio.run(_closed_loop(port, requests, 4, 2.0))
        # Capacity: what the server answers when it is kept just busy (a few requests always in flight).
        capacity = asyncio.run(_closed_loop(ports["shedding"], requests, args.capacity_c, args.seconds)).row()[
            "goodput"
        ]
        results: dict[tuple[str, float], list[dict[str, float]]] = {}
        health: dict[str, list[int]] = {name: [] for name in servers}
        for turn in range(args.rounds):
            for factor in args.levels:
                for name in list(servers) if turn % 2 == 0 else list(reversed(servers)):
                    level, status = asyncio.run(_open_loop(ports[name], requests, factor * capacity, args.seconds))
                    results.setdefault((name, factor), []).append({**level.row(), "connections": level.connections})
                    if factor == max(args.levels):
                        health[name].append(status)
        report(capacity, results, health, args)
    finally:
        for server in servers.values():
            stop(server)
    print(f"\nserver logs: {logs}")


def report(
    capacity: float,
    results: dict[tuple[str, float], list[dict[str, float]]],
    health: dict[str, list[int]],
    args: argparse.Namespace,
) -> None:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"\ncapacity: {capacity:.0f} req/s (the shedding server kept busy by {args.capacity_c} connections); "
        f"arrivals at 1×, 2×, 5× that rate, open loop; medians of {args.rounds} round(s), {args.seconds:.0f} s each\n"
    )
    print(
        f"{'load':>5} {'server':>9} {'goodput/s':>10} {'503/s':>8} {'late':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for factor in args.levels:
        for name in ("shedding", "queueing"):
            rows = results[(name, factor)]
            print(
                f"{factor:>4.0f}× {name:>9} {med(rows, 'goodput'):>10.0f} {med(rows, 'shed_per_s'):>8.0f} "
                f"{med(rows, 'late'):>7.0f} "
                f"{med(rows, 'p50_ms'):>8.1f} {med(rows, 'p99_ms'):>8.1f} {med(rows, 'max_ms'):>8.1f}"
            )
        shed, queued = results[("shedding", factor)], results[("queueing", factor)]
        print(
            f"      p99 queueing / shedding = {med(queued, 'p99_ms') / med(shed, 'p99_ms'):.1f}×, "
            f"goodput shedding / queueing = {med(shed, 'goodput') / med(queued, 'goodput'):.2f}"
        )
    print(f"\n/healthz during {max(args.levels):.0f}×: " + ", ".join(f"{n} {s}" for n, s in health.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--capacity-c", type=int, default=8, help="connections that measure the capacity")
    parser.add_argument(
        "--batch", type=int, default=1, help="records per request (above 1, a request is a batch of records)"
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
