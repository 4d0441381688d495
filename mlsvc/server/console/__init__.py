"""The web console under /console: server-rendered pages that read through the service layer, and actions that
call the same REST API a program does; its scripts, styles and charts ship in the package (no other host)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from mlsvc.server.console import batch, datasources, models, session

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the console under /console (its files under /console/static), with / pointing there."""
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for module in (session, datasources, models, batch):
        app.include_router(module.router, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)
