"""Helper processes that evaluate leaf bitvectors for the batch job's scoring threads, each with an interpreter of
its own: the evaluator is dozens of numpy calls a block of rows, and two threads handing one interpreter lock back
and forth around each call lost a third of their throughput (1.76 against 1.15 µs a row for two processes, churn's
300 trees). A helper gets the tables once (as .npz, read with ``allow_pickle=False``: arrays, never objects) and
then, per call, the feature matrix through memory shared with it, answering the raw scores the same way back.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import struct
import subprocess
import sys
import threading
from typing import IO, Any

import numpy as np

from mlsvc.prediction.bitvectors import Bitvectors, Floats, _Group

log = logging.getLogger("mlsvc.batch")
HELPER_ROWS = 8192  # rows a helper takes at a time: the batch job's slice
_HEADER = struct.Struct("<q")
_OK, _FAILED = b"\x00", b"\x01"


class HelperPool:
    """The helpers of one batch job: one per scoring thread and ensemble, started on first use, stopped with the
    pool. A helper that cannot start or dies is noted once, and its thread evaluates in process from then on."""

    def __init__(self) -> None:
        self._helpers: dict[tuple[int, int], _Helper | None] = {}
        self._lock = threading.Lock()
        self._closed = False

    def raw(self, bitvectors: Bitvectors, X: Floats, baseline: Floats) -> Floats:
        key = (threading.get_ident(), id(bitvectors))
        with self._lock:
            if self._closed:
                return bitvectors.raw_here(X, baseline)
            if key not in self._helpers:
                self._helpers[key] = _start(bitvectors, baseline, X.shape[1])
            helper = self._helpers[key]
        if helper is None:
            return bitvectors.raw_here(X, baseline)
        try:
            return helper.raw(X)
        except (OSError, EOFError, ValueError, RuntimeError) as exc:
            log.warning("a bitvector helper process stopped (%s); its thread scores in process from here", exc)
            with self._lock:
                self._helpers[key] = None
            helper.close()
            return bitvectors.raw_here(X, baseline)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            helpers = [h for h in self._helpers.values() if h is not None]
            self._helpers.clear()
        for helper in helpers:
            helper.close()


def _start(bitvectors: Bitvectors, baseline: Floats, n_features: int) -> _Helper | None:
    if not hasattr(os, "memfd_create"):  # Linux only; elsewhere the threads evaluate in process
        return None
    try:
        return _Helper(bitvectors, baseline, n_features)
    except OSError as exc:
        log.warning("no bitvector helper process (%s): scoring in process", exc)
        return None


class _Helper:
    """One helper process and the shared memory it reads a matrix from and writes its scores to."""

    def __init__(self, bitvectors: Bitvectors, baseline: Floats, n_features: int) -> None:
        self.n_features = n_features
        self.n_outputs = baseline.shape[1]
        self._in_bytes = HELPER_ROWS * n_features * 8
        size = self._in_bytes + HELPER_ROWS * self.n_outputs * 8
        fd = os.memfd_create("mlsvc-bitvectors")
        try:
            os.ftruncate(fd, size)
            self._memory = mmap.mmap(fd, size)
            env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mlsvc.prediction.helpers", str(fd), str(n_features), str(self.n_outputs)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=[fd],
                env=env,
            )
        finally:
            os.close(fd)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to, self._from = self._process.stdin, self._process.stdout
        tables = _as_arrays(bitvectors, baseline)
        _send(self._to, tables)

    def raw(self, X: Floats) -> Floats:
        out = np.empty((X.shape[0], self.n_outputs))
        for start in range(0, X.shape[0], HELPER_ROWS):
            n = min(HELPER_ROWS, X.shape[0] - start)
            shared = np.ndarray((n, self.n_features), dtype=np.float64, buffer=self._memory, order="F")
            shared[...] = X[start : start + n]
            self._to.write(_HEADER.pack(n))
            self._to.flush()
            _answer(self._from)  # waits for the helper without holding the interpreter lock
            scores = np.ndarray((n, self.n_outputs), dtype=np.float64, buffer=self._memory, offset=self._in_bytes)
            out[start : start + n] = scores
        return out

    def close(self) -> None:
        try:
            self._to.close()  # the helper ends at the end of its input
            self._process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        self._from.close()
        self._memory.close()


def _as_arrays(bitvectors: Bitvectors, baseline: Floats) -> dict[str, np.ndarray]:
    arrays = {
        "values": bitvectors.values,
        "offsets": bitvectors.offsets,
        "width": np.asarray(bitvectors.width),
        "baseline": baseline,
        "groups": np.asarray(len(bitvectors.groups)),
    }
    for i, group in enumerate(bitvectors.groups):
        arrays[f"g{i}.features"] = group.features
        arrays[f"g{i}.table"] = group.table
        arrays[f"g{i}.thresholds"] = np.asarray(len(group.thresholds))
        for j, thresholds in enumerate(group.thresholds):
            arrays[f"g{i}.t{j}"] = thresholds
    return arrays


def _from_arrays(arrays: Any) -> tuple[Bitvectors, Floats]:
    groups = []
    for i in range(int(arrays["groups"])):
        count = int(arrays[f"g{i}.thresholds"])
        thresholds = tuple(arrays[f"g{i}.t{j}"] for j in range(count))
        groups.append(_Group(arrays[f"g{i}.features"], thresholds, arrays[f"g{i}.table"]))
    bitvectors = Bitvectors(tuple(groups), arrays["values"], int(arrays["width"]), arrays["offsets"])
    return bitvectors, arrays["baseline"]


def _send(stream: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy types its keywords as allow_pickle only
    data = buffer.getvalue()
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("the helper process closed its pipe")
    return data


def _answer(stream: IO[bytes]) -> None:
    status = _read_exactly(stream, 1)
    if status == _OK:
        return
    (length,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    raise RuntimeError(_read_exactly(stream, length).decode("utf-8", "replace"))


def _serve(fd: int, n_features: int, n_outputs: int) -> None:
    """The helper's side: the tables, then one matrix after another until its input ends."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    (length,) = _HEADER.unpack(_read_exactly(source, _HEADER.size))
    with np.load(io.BytesIO(_read_exactly(source, length)), allow_pickle=False) as arrays:
        bitvectors, baseline = _from_arrays({k: arrays[k] for k in arrays.files})
    in_bytes = HELPER_ROWS * n_features * 8
    memory = mmap.mmap(fd, in_bytes + HELPER_ROWS * n_outputs * 8)
    while header := source.read(_HEADER.size):
        (n,) = _HEADER.unpack(header)
        try:
            X = np.ndarray((n, n_features), dtype=np.float64, buffer=memory, order="F")
            scores = np.ndarray((n, n_outputs), dtype=np.float64, buffer=memory, offset=in_bytes)
            scores[...] = bitvectors.raw_here(X, baseline)
        except Exception as exc:  # reported to the job's thread, which scores in process instead
            message = repr(exc).encode()
            sink.write(_FAILED + _HEADER.pack(len(message)) + message)
        else:
            sink.write(_OK)
        sink.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
