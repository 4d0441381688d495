"""`make run`'s examples: on an empty store, register the example datasources and train their models."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from mlsvc.config import Settings
from mlsvc.errors import MlsvcError
from mlsvc.resources import DataSourceCreate, ModelCreate
from mlsvc.service import ListQuery, Service

log = logging.getLogger("mlsvc.examples")
SPECS = Path.cwd() / "models"


def load_specs(folder: Path = SPECS) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def start_examples(settings: Settings, service: Service, folder: Path = SPECS) -> threading.Thread | None:
    """Seed the examples in the background when the store holds no datasource yet."""
    specs = load_specs(folder)
    items, _ = service.datasources.list(ListQuery(limit=1))
    if not specs or items:
        return None
    thread = threading.Thread(
        target=_seed, args=(settings, service, specs, folder.parent), daemon=True, name="examples"
    )
    thread.start()
    return thread


def _seed(settings: Settings, service: Service, specs: list[dict[str, Any]], root: Path) -> None:
    for spec in specs:
        try:
            _seed_one(service, spec, root)
        except MlsvcError as exc:
            log.warning("example %s not trained: %s", spec.get("name"), exc.message)
        except Exception:  # one broken spec must not stop the others
            log.exception("example %s not trained", spec.get("name"))
    _print_calls(settings, specs)


def _datasource(service: Service, spec: dict[str, Any], root: Path, suffix: str = "") -> str:
    source = dict(spec)
    source["data_uri"] = str((root / source["data_uri"]).resolve())
    ds_id = f"example-{source.pop('name')}{suffix}"
    ds, _ = service.datasources.create(DataSourceCreate(id=ds_id, name=ds_id, **source))
    while (ds := service.datasources.get(ds.id)).status.value in ("PENDING", "INPROGRESS"):
        time.sleep(0.5)
    return ds.id


def _seed_one(service: Service, spec: dict[str, Any], root: Path) -> None:
    ds_id = _datasource(service, {"name": spec["name"], **spec["datasource"]}, root)
    model: dict[str, Any] = {
        k: spec[k] for k in ("name", "model_type", "time_budget_s", "recipe", "seed", "k", "roles") if k in spec
    }
    if "items" in spec:
        model["items_datasource_id"] = _datasource(service, {"name": spec["name"], **spec["items"]}, root, "-items")
    if budget := os.environ.get("MLSVC_EXAMPLES_BUDGET_S"):
        model["time_budget_s"] = float(budget)  # the tests train the examples quickly
    service.models.create(ModelCreate(id=f"example-{spec['name']}-v1", datasource_id=ds_id, **model))
    log.info("example %s: datasource %s, model training", spec["name"], ds_id)


def _print_calls(settings: Settings, specs: list[dict[str, Any]]) -> None:
    url = f"http://{settings.host}:{settings.port}"
    name = specs[0]["name"]
    print(
        f"""
Example models are training. Once `mlsvc models get {name}` says COMPLETED, try:
  curl -s -XPOST {url}/v1/models/{name}/predict -d '{{"record": {{"tenure_months": 2, "contract": "month-to-month"}}}}'
  python -c "import mlsvc.client as m; print(m.Client('{url}').predict('{name}', {{'tenure_months': 2}}))"
  mlsvc predict {name} '{{"tenure_months": 2, "contract": "month-to-month"}}'
and for the recommendation example:
  curl -s -XPOST {url}/v1/models/recommendation/predict -d '{{"user_id": "U00042", "k": 5}}'
""",
        flush=True,
    )
