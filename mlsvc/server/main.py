"""`mlsvc serve`: migrate the store, start the worker processes, and serve the API with uvicorn."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from mlsvc.config import Settings
from mlsvc.jobs.processes import WorkerPool
from mlsvc.metadata.sql import utcnow
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.server.app import create_app
from mlsvc.service import Service

log = logging.getLogger("mlsvc.serve")
WARM_EVERY_S = 2.0


def warm_new_models(service: Service, every_s: float = WARM_EVERY_S) -> None:
    """Load each model that completes (in any worker) into this process's scorer cache before its first
    prediction asks for it, so no request pays the load."""
    since = utcnow()
    while True:
        time.sleep(every_s)
        try:
            models, _ = service.store.list("model", status="COMPLETED", limit=20)
            fresh = [m for m in models if m["updated_at"] > since]
            for model in reversed(fresh):
                service.warm(model)
            if models:
                since = max(since, max(m["updated_at"] for m in models))
        except Exception:  # the warmer is an optimisation; a failed round is logged and retried
            log.warning("warming models failed", exc_info=True)


def serve(settings: Settings, workers: int | None = None) -> None:
    """Run the API in this process and ``workers`` job worker processes beside it, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings.home.mkdir(parents=True, exist_ok=True)
    print(settings.describe(), flush=True)
    service = Service(settings)
    # Create MLflow's database once here, before several workers could race to create it.
    MlflowRegistry(settings).initialize()
    pool = WorkerPool(settings, settings.workers if workers is None else workers)
    pool.start()
    if settings.examples:
        from mlsvc.examples import start_examples

        start_examples(settings, service)
    threading.Thread(target=warm_new_models, args=(service,), daemon=True, name="warmer").start()
    print(f"API docs at http://{settings.host}:{settings.port}/docs", flush=True)
    try:
        uvicorn.run(
            create_app(settings, service), host=settings.host, port=settings.port, log_level="info", access_log=False
        )
    finally:
        pool.stop()
        service.store.dispose()
