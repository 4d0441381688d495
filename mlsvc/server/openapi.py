"""Prints the app's OpenAPI document, the source of api/openapi.json: `python -m mlsvc.server.openapi`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlsvc.config import Settings
from mlsvc.server.app import create_app


def openapi_document() -> str:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env()
        settings = type(settings)(
            **{**settings.__dict__, "home": Path(home), "database_url": f"sqlite:///{home}/openapi.db"}
        )
        app = create_app(settings)
        text = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
        app.state.service.close()
        return text


if __name__ == "__main__":
    print(openapi_document(), end="")
