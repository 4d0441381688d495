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
    print(settings.describe(), flush=True)
    runtime = Runtime(settings, workers)
    runtime.start()
    print(f"API docs at http://{settings.host}:{settings.port}/docs", flush=True)
    try:
        uvicorn.run(
            create_app(settings, runtime.service),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,
        )
    finally:
        runtime.stop()
