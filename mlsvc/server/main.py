"""`mlsvc serve`: migrate the store, start the worker processes, and serve the API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from mlsvc.config import Settings
from mlsvc.jobs.processes import WorkerPool
from mlsvc.registry import Registry
from mlsvc.server.app import create_app
from mlsvc.service import Service

log = logging.getLogger("mlsvc.serve")


def serve(settings: Settings, workers: int | None = None) -> None:
    """Run the API in this process and ``workers`` job worker processes beside it, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings.home.mkdir(parents=True, exist_ok=True)
    print(settings.describe(), flush=True)
    service = Service(settings)
    # Create MLflow's database once here, before several workers could race to create it.
    Registry(settings).initialize()
    pool = WorkerPool(settings, settings.workers if workers is None else workers)
    pool.start()
    if settings.examples:
        from mlsvc.examples import start_examples

        start_examples(settings, service)
    print(f"API docs at http://{settings.host}:{settings.port}/docs", flush=True)
    try:
        uvicorn.run(create_app(settings, service), host=settings.host, port=settings.port, log_level="info",
                    access_log=False)
    finally:
        pool.stop()
        service.store.dispose()
