"""The worker loop: claim a job, run its handler with a heartbeat, record the outcome; stop a job whose resource
is deleted while it runs."""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlsvc.config import Settings
from mlsvc.errors import MlsvcError
from mlsvc.jobs.context import JobContext
from mlsvc.jobs.handlers import HANDLERS, kind_of, load_cleanup, load_handler
from mlsvc.metadata import (
    RESOURCE_OF_JOB,
    Claim,
    Document,
    InputNotReady,
    JobCancelled,
    JobQueue,
    LeaseLost,
    ResourceKind,
)

if TYPE_CHECKING:
    from mlsvc.metadata.sql import SqlMetadataStore
    from mlsvc.planes import Planes

# HANDLERS stays importable from here for callers that patch the table through this module.
__all__ = ["EXIT_REPLACE", "HANDLERS", "Worker", "worker_main"]

log = logging.getLogger("mlsvc.worker")

# How often a running job's resource is looked at for a delete, and how long the handler then has to stop at a
# progress report before its worker process is ended instead (work inside a long scikit-learn fit reports nothing).
CANCEL_CHECK_S = 1.0
CANCEL_GRACE_S = 3.0
# The exit code of a worker process that ended itself to stop such a job: its supervisor starts another.
EXIT_REPLACE = 75
CANCELLED = "the resource was deleted while its job ran; the job was stopped and nothing of it was published"


class Worker:
    """One worker: a loop that runs jobs one at a time in this process.

    ``replaceable``: this process is a worker process of its own, which may end itself (``EXIT_REPLACE``) to stop
    a job whose resource was deleted and that does not stop at its next progress report. A worker running inside
    another program (a test, a benchmark) only stops jobs at their progress reports.
    """

    def __init__(
        self,
        settings: Settings,
        store: SqlMetadataStore | None = None,
        parent_pid: int | None = None,
        replaceable: bool = False,
    ) -> None:
        self.settings = settings
        self.parent_pid = parent_pid
        self.replaceable = replaceable
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
        claim = self.queue.claim(self.owner, self._ended_unrun)
        if claim is None:
            return False
        self._run(claim)
        return True

    def _run(self, claim: Claim) -> None:
        started = time.monotonic()
        cancelled = threading.Event()
        stuck = (lambda: self._replace_process(claim)) if self.replaceable else None
        beat = _Heartbeat(self.queue, claim, self.settings.job_lease_s / 3, cancelled, stuck)
        beat.start()
        try:
            try:
                ctx = JobContext(self.planes, claim, cancelled)
                fields = load_handler(kind_of(claim.kind, ctx.resource))(ctx)
            finally:
                beat.stop()  # the handler is over: no lease left to keep, no job left to stop
            self.queue.complete(claim, fields, ctx.aliases)
            self._log_end(claim, "COMPLETED", started)
            self._after(ctx)
        except InputNotReady as waiting:
            self.queue.defer(claim, waiting.wait_s, waiting.message)
        except JobCancelled:
            self._cancel(claim, CANCELLED, started)
        except LeaseLost:
            log.warning("job %s lost its lease; another worker runs it now", claim.job_id)
        except MlsvcError as exc:
            self._fail(claim, exc.message, started)
        except (KeyboardInterrupt, SystemExit):
            self.queue.release(claim)
            raise
        except Exception as exc:
            log.exception("job %s (%s %s) raised", claim.job_id, claim.kind, claim.resource_id)
            self._fail(claim, f"internal error while running the job ({type(exc).__name__}: {exc})", started)

    def _after(self, ctx: JobContext) -> None:
        for hook in ctx.after_complete:
            try:
                hook()
            except Exception:  # the result is recorded; a mirror that failed is logged, not fatal
                log.warning("a follow-up of job %s failed", ctx.claim.job_id, exc_info=True)

    def _fail(self, claim: Claim, message: str, started: float) -> None:
        if self._end(claim, self.queue.fail, message, "failure"):
            self._log_end(claim, "FAILED", started, message)

    def _cancel(self, claim: Claim, message: str, started: float | None = None) -> None:
        if self._end(claim, self.queue.cancel, message, "cancellation"):
            self._log_end(claim, "cancelled", started, message)

    def _log_end(self, claim: Claim, ended: str, started: float | None, message: str | None = None) -> None:
        took = f"after {time.monotonic() - started:.1f} s, " if started is not None else ""
        how = f"{took}job {claim.job_id}, attempt {claim.attempt}"
        resource = self._resource(claim.resource_kind, claim.resource_id)
        _log_job_end(claim.resource_kind, claim.resource_id, resource, ended, how, message)

    def _ended_unrun(self, kind: str, resource_id: str) -> None:
        """A job the queue ended without running it: given up after its last attempt, or its resource deleted."""
        resource_kind = RESOURCE_OF_JOB[kind]
        resource = self._resource(resource_kind, resource_id)
        given_up = resource is not None and resource.get("status") == "FAILED"
        ended, how = ("FAILED", "given up by the queue") if given_up else ("cancelled", "deleted before it ran")
        _log_job_end(resource_kind, resource_id, resource, ended, how)
        self._clean(kind, resource_id)

    def _resource(self, kind: ResourceKind, resource_id: str) -> Document | None:
        try:
            return self.store.find(kind, resource_id)
        except Exception:  # the log line must not cost the job its end; it says less instead
            log.warning("could not read %s %s for its log line", kind, resource_id, exc_info=True)
            return None

    def _end(self, claim: Claim, record: Callable[[Claim, str], None], message: str, what: str) -> bool:
        """Record a job's end without its result, then remove what it left behind; False if its lease was lost."""
        try:
            record(claim, message)
        except LeaseLost:
            log.warning("job %s lost its lease before its %s was recorded", claim.job_id, what)
            return False
        self._clean(claim.kind, claim.resource_id)
        return True

    def _clean(self, kind: str, resource_id: str) -> None:
        """Remove what a job that ended without its result left behind (staged outputs, a registered version), best
        effort."""
        try:
            cleanup = load_cleanup(kind)
            resource = self.store.find(RESOURCE_OF_JOB[kind], resource_id) if cleanup else None
            if cleanup is not None and resource is not None:
                cleanup(self.planes, resource)
        except Exception:
            log.warning("could not clean up after the %s job of %s", kind, resource_id, exc_info=True)

    def _replace_process(self, claim: Claim) -> None:
        """Stop a cancelled job that did not stop by itself: end the processes it started, record it cancelled,
        remove what it staged, and end this process; its supervisor starts another worker in its place."""
        log.warning(
            "job %s (%s %s) did not stop within %.0f s of its resource's delete; ending worker process %s to stop it",
            claim.job_id,
            claim.kind,
            claim.resource_id,
            CANCEL_GRACE_S,
            os.getpid(),
        )
        try:
            _kill_descendants()
            self._cancel(claim, CANCELLED + " (its worker process was replaced to stop it)")
        finally:
            logging.shutdown()
            os._exit(EXIT_REPLACE)


def _log_job_end(
    kind: ResourceKind,
    resource_id: str,
    resource: Document | None,
    ended: str,
    how: str,
    message: str | None = None,
) -> None:
    """The one line a job's end gets, in the terms its user reads on the resource: its kind, id and name, how it
    ended (COMPLETED, FAILED or cancelled), and the message (the resource's own, unless given); FAILED at WARNING.
    E.g. ``datasource ds-1 'churn' FAILED (after 0.4 s, job 7, attempt 1): churn.csv has no data rows``."""
    resource = resource or {}
    name = f" '{resource['name']}'" if resource.get("name") else ""
    if resource.get("version") is not None:
        name += f" v{resource['version']}"
    said = message if message is not None else resource.get("message") or ""
    log.log(
        logging.WARNING if ended == "FAILED" else logging.INFO,
        "%s %s%s %s (%s)%s",
        kind.replace("_", " "),
        resource_id,
        name,
        ended,
        how,
        f": {said}" if said else "",
    )


class _Heartbeat(threading.Thread):
    """Extends the job's lease while the handler runs, so a live worker keeps its job, and looks every
    ``CANCEL_CHECK_S`` whether the job's resource was deleted. Then it sets ``cancelled``, which makes the handler's
    next progress report raise JobCancelled, and, if the handler has not ended ``CANCEL_GRACE_S`` later, calls
    ``stuck`` (when given) to stop it the hard way."""

    def __init__(
        self,
        queue: JobQueue,
        claim: Claim,
        every_s: float,
        cancelled: threading.Event,
        stuck: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{claim.job_id}")
        self.queue = queue
        self.claim = claim
        self.every_s = every_s
        self.cancelled = cancelled
        self.stuck = stuck
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._next_beat = time.monotonic() + every_s

    def run(self) -> None:
        tick = min(CANCEL_CHECK_S, self.every_s)
        while not self._done.wait(tick):
            try:
                if self._beat_due():
                    if not self.queue.heartbeat(self.claim):
                        return  # the lease was lost: the handler's next report raises LeaseLost
                elif self.queue.cancelled(self.claim):
                    raise JobCancelled(self.claim.resource_id)
            except JobCancelled:
                self._stop_job()
                return
            except Exception:  # a passing database error must not kill the job; the next beat retries
                log.warning("heartbeat for job %s failed", self.claim.job_id, exc_info=True)

    def _beat_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_beat:
            return False
        self._next_beat = now + self.every_s
        return True

    def _stop_job(self) -> None:
        log.info("the resource of job %s was deleted; stopping the job", self.claim.job_id)
        self.cancelled.set()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while not self._done.wait(max(0.0, min(self.every_s, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            if self._beat_due():  # keep the lease while the handler winds down, so no one else claims the job
                try:
                    self.queue.heartbeat(self.claim)
                except JobCancelled:
                    pass
                except Exception:
                    log.warning("heartbeat for job %s failed", self.claim.job_id, exc_info=True)
        with self._lock:  # held on: a handler that ends now waits in stop() until this process has ended
            if not self._done.is_set() and self.stuck is not None:
                self.stuck()

    def stop(self) -> None:
        with self._lock:
            self._done.set()


def _kill_descendants() -> None:
    """SIGKILL every process this one started, and theirs (a batch job's scoring processes, joblib's workers)."""
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (not Linux): the processes multiprocessing started
        return [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _share_cores(workers: int) -> None:
    """Give each worker process its share of the cores, so that N workers' native thread pools
    (OpenMP, BLAS) do not oversubscribe the machine. Set before numpy or scikit-learn is imported."""
    share = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def worker_main(settings: Settings, siblings: int = 1, parent_pid: int | None = None) -> None:
    """Entry point of a worker process (one of ``siblings`` on this host, started by the process ``parent_pid``):
    run jobs until SIGTERM or SIGINT. Without ``parent_pid`` (`mlsvc worker`), keep one such process running."""
    if parent_pid is None:
        _keep_one_worker(settings)
        return
    _log_setup()
    _share_cores(siblings)
    worker = Worker(settings, parent_pid=parent_pid, replaceable=True)
    threading.Thread(target=_warm_up, args=(worker.planes,), name="warm-up", daemon=True).start()

    def _graceful(signum: int, _frame: Any) -> None:
        # Once: a second signal (the supervisor's SIGTERM after the group's) must not cut the job's hand-back short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    try:
        worker.run_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        worker.planes.close()


# What a model job imports on first use (scikit-learn, MLflow, skops: several seconds): imported while the worker
# waits for its first job, so that a job's time budget is not spent on them.
WARM_MODULES = ("mlsvc.training.job", "mlsvc.prediction.batch_job", "mlflow", "mlflow.sklearn", "skops.io")


def _warm_up(planes: Planes) -> None:
    """Imports, then the clients a first job would otherwise build while its user waits: botocore's S3 client
    (1.3 s here, reading its service models) and MLflow's tracking store (half a second)."""
    for module in WARM_MODULES:
        try:
            importlib.import_module(module)
        except Exception:  # the job that needs it will say what is wrong
            log.warning("could not import %s ahead of the first job", module, exc_info=True)
    from mlsvc.objects.s3 import client as s3_client

    for name, warm in (("the S3 client", s3_client), ("MLflow's stores", planes.registry.warm)):
        try:
            warm()
        except Exception:  # the same: the first job that needs it builds it again and reports what failed
            log.warning("could not build %s ahead of the first job", name, exc_info=True)


def _keep_one_worker(settings: Settings) -> None:
    """`mlsvc worker`: the worker loop in a process of its own, started again when it ends itself to stop a
    cancelled job (``EXIT_REPLACE``) or is killed; SIGTERM or SIGINT stop it (it hands its job back) and then this."""
    _log_setup()
    spawn = multiprocessing.get_context("spawn")
    proc: Any = None

    def _graceful(signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    code = 0
    try:
        while True:
            # Not a daemon: a worker's batch job starts processes of its own, which daemons may not.
            proc = spawn.Process(target=worker_main, args=(settings, 1, os.getpid()), name="mlsvc-worker")
            proc.start()
            proc.join()
            if proc.exitcode != EXIT_REPLACE and proc.exitcode >= 0:
                code = proc.exitcode
                break
            log.warning("worker process %s exited with %s; starting another", proc.pid, proc.exitcode)
            if proc.exitcode != EXIT_REPLACE:
                time.sleep(1.0)  # killed: do not spin if whatever killed it kills the next one too
    except (KeyboardInterrupt, SystemExit):
        if proc is not None and proc.is_alive():
            proc.terminate()  # if the signal came to this process only; the worker ignores a second one
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if code:
        raise SystemExit(code)
