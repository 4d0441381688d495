"""Process composition: what `mlsvc serve` runs beside its API (the service, worker processes, the warmer and
the examples); `mlsvc worker` and the jobs open the same planes through ``open_planes``."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from mlsvc.config import Settings
from mlsvc.planes import Planes, open_planes

if TYPE_CHECKING:
    from mlsvc.jobs.processes import WorkerPool
    from mlsvc.service import Service

__all__ = ["Planes", "Runtime", "open_planes"]
log = logging.getLogger("mlsvc.runtime")


class Runtime:
    """What `mlsvc serve` runs beside its API: the service, ``workers`` job worker processes, the warmer that
    loads newly completed models, and (with MLSVC_EXAMPLES=1) the examples."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        from mlsvc.service import Service

        self.settings = settings
        self.workers = settings.workers if workers is None else workers
        settings.home.mkdir(parents=True, exist_ok=True)
        self.service: Service = Service(settings)
        self.pool: WorkerPool | None = None

    def start(self) -> None:
        from mlsvc.jobs.processes import WorkerPool

        # Create MLflow's database once here, before several workers could race to create it.
        self.service.planes.registry.initialize()
        self.pool = WorkerPool(self.settings, self.workers)
        self.pool.start()
        if self.settings.examples:
            from mlsvc.examples import start_examples

            start_examples(self.settings, self.service)
        threading.Thread(target=self.service.predictions.warm_forever, daemon=True, name="warmer").start()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        self.service.close()
