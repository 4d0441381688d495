"""/docs (Swagger UI) and /redoc (ReDoc), with their scripts, styles and icon served by mlsvc itself, so that the
API's documentation works on a machine without Internet access."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
# The fastapi-offline package ships the Swagger UI and ReDoc builds FastAPI would load from a CDN; only its files
# are used (its FastAPI subclass is not).
ASSETS = Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the documentation pages and their assets; the app must be made with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's own pages load their assets from a CDN)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    # No validator badge: Swagger UI would send the document to validator.swagger.io to draw it.
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that serves the API under a prefix
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} — API docs",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} — API reference",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
