"""The Dask cluster as jobs use it: connecting to the scheduler, the stores a Dask worker opens for itself, and a
job's futures gathered in order while it reports progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode, MlsvcError

if TYPE_CHECKING:
    from mlsvc.planes import Planes

WAIT_S = 0.5  # how long a job waits on its parts between two looks at its progress (written every second)
CONNECT_TIMEOUT_S = 10.0


def connect(settings: Settings) -> Any:
    """A Dask client of the configured scheduler; a clear error when it cannot be reached."""
    from distributed import Client

    try:
        return Client(settings.dask_scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except OSError as exc:
        raise MlsvcError(
            ErrorCode.INTERNAL,
            f"the Dask scheduler at {settings.dask_scheduler} (MLSVC_DASK_SCHEDULER) cannot be reached: {exc}; "
            "start it, or unset MLSVC_DASK_SCHEDULER to run the job in this worker",
        ) from exc


def gather_in_order(
    client: Any, futures: list[Any], on_result: Callable[[int, Any], None], report: Callable[[], None]
) -> list[Any]:
    """Each future's result, in the futures' order, as the cluster finishes them: ``on_result`` is told each one
    (its index and result) as it comes, and ``report`` is called every WAIT_S or so (to write progress, or stop
    the job if its resource was deleted). A task's error is raised here, ending the job with its message."""
    from distributed import wait

    results: dict[int, Any] = {}
    position = {f.key: i for i, f in enumerate(futures)}
    pending = set(futures)
    with client.as_current():  # distributed.wait looks for the client there
        while pending:
            try:
                done, pending = wait(pending, timeout=WAIT_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # none finished within the wait: report all the same
                report()
                continue
            for future in done:
                index = position[future.key]
                results[index] = future.result()
                on_result(index, results[index])
            report()
    return [results[i] for i in range(len(futures))]


# --- state of a Dask worker process ---

_lock = threading.Lock()
_planes: Planes | None = None


def worker_planes() -> Planes:
    """The stores this Dask worker's own settings (its MLSVC_* and AWS environment) name, opened once a process."""
    global _planes
    with _lock:
        if _planes is None:
            from mlsvc.planes import open_planes

            _planes = open_planes(Settings.from_env())
        return _planes
