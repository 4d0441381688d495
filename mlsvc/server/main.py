"""`mlsvc serve`: the REST API over uvicorn, beside the runtime's worker processes."""

from __future__ import annotations

import logging

import uvicorn

from mlsvc.config import Settings
from mlsvc.runtime import Runtime
from mlsvc.server.app import create_app


def serve(settings: Settings, workers: int | None = None) -> None:
    """Run the API in this process and ``workers`` job worker processes beside it, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    refusal = settings.refusal_to_serve()
    if refusal:
        raise SystemExit(refusal)
    runtime = Runtime(settings, workers)
    print(settings.describe(_role(runtime.workers)), flush=True)
    runtime.start()
    print(f"API docs at http://{settings.host}:{settings.port}/docs", flush=True)
    try:
        uvicorn.run(
            create_app(settings, runtime.service),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,  # the app's own access log (server.access_log) names each request's id
        )
    finally:
        runtime.stop()


def _role(workers: int) -> str:
    if workers == 0:
        return "API replica: no job workers here; `mlsvc worker` processes on this metadata store run the jobs"
    return f"API and {workers} job worker process{'es' if workers > 1 else ''} (MLSVC_WORKERS)"
