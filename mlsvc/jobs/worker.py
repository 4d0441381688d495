"""The worker loop: claim a job, run its handler with a heartbeat, record the outcome."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any

from mlsvc.config import Settings
from mlsvc.errors import MlsvcError
from mlsvc.jobs.context import JobContext
from mlsvc.jobs.handlers import HANDLERS, kind_of, load_handler
from mlsvc.metadata import Claim, JobQueue, LeaseLost

if TYPE_CHECKING:
    from mlsvc.metadata.sql import SqlMetadataStore

# HANDLERS stays importable from here for callers that patch the table through this module.
__all__ = ["HANDLERS", "Worker", "worker_main"]

log = logging.getLogger("mlsvc.worker")


class Worker:
    """One worker: a loop that runs jobs one at a time in this process."""

    def __init__(
        self, settings: Settings, store: SqlMetadataStore | None = None, parent_pid: int | None = None
    ) -> None:
        self.settings = settings
        self.parent_pid = parent_pid
        # Imported here: the planes load pandas, hence numpy, which must wait for _share_cores (worker_main).
        from mlsvc.planes import open_planes

        self.planes = open_planes(settings, store)
        self.store = self.planes.metadata
        self.queue = self.planes.queue
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        log.info("worker %s started", self.owner)
        while not self._stop.is_set() and self._parent_alive():
            if not self.run_once():
                self._stop.wait(self.settings.job_poll_s)

    def _parent_alive(self) -> bool:
        """A worker started by `mlsvc serve` ends with it, even when the server was killed outright."""
        return self.parent_pid is None or os.getppid() == self.parent_pid

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        claim = self.queue.claim(self.owner)
        if claim is None:
            return False
        self._run(claim)
        return True

    def _run(self, claim: Claim) -> None:
        beat = _Heartbeat(self.queue, claim, self.settings.job_lease_s / 3)
        beat.start()
        try:
            ctx = JobContext(self.planes, claim)
            fields = load_handler(kind_of(claim.kind, ctx.resource))(ctx)
            self.queue.complete(claim, fields, ctx.aliases)
            log.info("job %s (%s %s) completed", claim.job_id, claim.kind, claim.resource_id)
            self._after(ctx)
        except LeaseLost:
            log.warning("job %s lost its lease; another worker runs it now", claim.job_id)
        except MlsvcError as exc:
            self._fail(claim, exc.message)
        except (KeyboardInterrupt, SystemExit):
            self.queue.release(claim)
            raise
        except Exception as exc:
            log.exception("job %s failed", claim.job_id)
            self._fail(claim, f"internal error while running the job ({type(exc).__name__}: {exc})")
        finally:
            beat.stop()

    def _after(self, ctx: JobContext) -> None:
        for hook in ctx.after_complete:
            try:
                hook()
            except Exception:  # the result is recorded; a mirror that failed is logged, not fatal
                log.warning("a follow-up of job %s failed", ctx.claim.job_id, exc_info=True)

    def _fail(self, claim: Claim, message: str) -> None:
        try:
            self.queue.fail(claim, message)
        except LeaseLost:
            log.warning("job %s lost its lease before its failure was recorded", claim.job_id)


class _Heartbeat(threading.Thread):
    """Extends the job's lease while the handler runs, so a live worker keeps its job."""

    def __init__(self, queue: JobQueue, claim: Claim, every_s: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{claim.job_id}")
        self.queue = queue
        self.claim = claim
        self.every_s = every_s
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                if not self.queue.heartbeat(self.claim):
                    return
            except Exception:  # a passing database error must not kill the job; the next beat retries
                log.warning("heartbeat for job %s failed", self.claim.job_id, exc_info=True)

    def stop(self) -> None:
        self._done.set()


def _share_cores(workers: int) -> None:
    """Give each worker process its share of the cores, so that N workers' native thread pools
    (OpenMP, BLAS) do not oversubscribe the machine. Set before numpy or scikit-learn is imported."""
    share = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)


def worker_main(settings: Settings, siblings: int = 1, parent_pid: int | None = None) -> None:
    """Entry point of a worker process (one of ``siblings`` on this host): run jobs until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _share_cores(siblings)
    worker = Worker(settings, parent_pid=parent_pid)

    def _graceful(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _graceful)
    try:
        worker.run_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        worker.planes.close()
