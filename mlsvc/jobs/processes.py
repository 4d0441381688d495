"""The worker processes `mlsvc serve` starts and keeps alive (jobs never run in the API's process)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from multiprocessing.process import BaseProcess

from mlsvc.config import Settings
from mlsvc.jobs.worker import EXIT_REPLACE, worker_main

log = logging.getLogger("mlsvc.workers")


class WorkerPool:
    """N worker processes; one that dies (killed, out of memory) is replaced, and its job is reclaimed by lease;
    one that ended itself to stop a deleted resource's job (``EXIT_REPLACE``) is replaced the same way."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        # spawn, not fork: the API process has threads and open connections that must not be copied.
        self._ctx = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="worker-supervisor")

    def start(self) -> None:
        self.processes = [self._spawn(i) for i in range(self.count)]
        self._supervisor.start()

    def _spawn(self, index: int) -> BaseProcess:
        # Not a daemon: a worker's batch job starts processes of its own, which daemons may not. The worker
        # watches for this process to go away instead (see Worker.run_forever).
        proc = self._ctx.Process(
            target=worker_main, args=(self.settings, self.count, os.getpid()), name=f"mlsvc-worker-{index}"
        )
        proc.start()
        log.info("started worker process %s (pid %s)", proc.name, proc.pid)
        return proc

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.processes):
                if not proc.is_alive() and not self._stopping.is_set():
                    if proc.exitcode == EXIT_REPLACE:
                        log.info("worker process %s (pid %s) ended to stop a deleted job", proc.name, proc.pid)
                    else:
                        log.warning(
                            "worker process %s (pid %s) exited with %s; starting another",
                            proc.name,
                            proc.pid,
                            proc.exitcode,
                        )
                    self.processes[i] = self._spawn(i)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        for proc in self.processes:
            if proc.is_alive():
                proc.terminate()
        for proc in self.processes:
            proc.join(timeout_s)
            if proc.is_alive():
                proc.kill()
