"""`make run`'s examples: on an empty store, register the example datasources and train their models."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mlsvc.config import Settings
from mlsvc.errors import MlsvcError
from mlsvc.resources import DataSourceCreate, ModelCreate
from mlsvc.service import ListQuery, Service

log = logging.getLogger("mlsvc.examples")
SPECS = Path.cwd() / "models"
T = TypeVar("T")


def load_specs(folder: Path = SPECS) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def start_examples(settings: Settings, service: Service, folder: Path = SPECS) -> threading.Thread | None:
    """Print where to go and what to try, then seed the examples in the background when the store holds no
    datasource yet; a line is printed as each example's model completes."""
    specs = load_specs(folder)
    if specs:
        _print_start(settings, specs)
    items, _ = service.datasources.list(ListQuery(limit=1))
    if not specs or items:
        return None
    thread = threading.Thread(target=_seed, args=(service, specs, folder.parent), daemon=True, name="examples")
    thread.start()
    return thread


def _seed(service: Service, specs: list[dict[str, Any]], root: Path) -> None:
    # Every datasource is registered first, so none waits behind another example's training.
    started = time.monotonic()
    sources: dict[str, dict[str, str]] = {}
    for spec in specs:
        sources[spec["name"]] = _guarded(spec, partial(_register_datasources, service, spec, root)) or {}
    models = {}
    for spec in specs:
        if sources[spec["name"]]:
            models[spec["name"]] = _guarded(spec, partial(_train, service, spec, sources[spec["name"]]))
    _report_as_they_end(service, {name: ref for name, ref in models.items() if ref}, started)


def _guarded(spec: dict[str, Any], step: Callable[[], T]) -> T | None:
    """One broken example must not stop the others; it says why it was not trained."""
    try:
        return step()
    except MlsvcError as exc:
        _say(f"example {spec.get('name')}: not trained: {exc.message}")
    except Exception:
        log.exception("example %s not trained", spec.get("name"))
    return None


def _register_datasources(service: Service, spec: dict[str, Any], root: Path) -> dict[str, str]:
    """The example's datasource (and its items', for a recommender): their ids by role."""
    ids = {"datasource": _datasource(service, {"name": spec["name"], **spec["datasource"]}, root)}
    if "items" in spec:
        ids["items"] = _datasource(service, {"name": spec["name"], **spec["items"]}, root, "-items")
    return ids


def _datasource(service: Service, spec: dict[str, Any], root: Path, suffix: str = "") -> str:
    source = dict(spec)
    source["data_uri"] = str((root / source["data_uri"]).resolve())
    ds_id = f"example-{source.pop('name')}{suffix}"
    ds, _ = service.datasources.create(DataSourceCreate(id=ds_id, name=ds_id, **source))
    return ds.id


def _train(service: Service, spec: dict[str, Any], sources: dict[str, str]) -> str | None:
    """Wait for the example's datasources, then queue its model; the model's id."""
    for ds_id in sources.values():
        while (ds := service.datasources.get(ds_id)).status.value in ("PENDING", "INPROGRESS"):
            time.sleep(0.5)
        if ds.status.value != "COMPLETED":
            _say(f"example {spec['name']}: datasource {ds_id} is {ds.status.value}: {ds.message}")
            return None
    model: dict[str, Any] = {
        k: spec[k] for k in ("name", "model_type", "time_budget_s", "recipe", "seed", "k", "roles") if k in spec
    }
    if "items" in sources:
        model["items_datasource_id"] = sources["items"]
    if budget := os.environ.get("MLSVC_EXAMPLES_BUDGET_S"):
        model["time_budget_s"] = float(budget)  # the tests train the examples quickly
    created, _ = service.models.create(
        ModelCreate(id=f"example-{spec['name']}-v1", datasource_id=sources["datasource"], **model)
    )
    log.info("example %s: datasource %s, model training", spec["name"], sources["datasource"])
    return created.id


def _report_as_they_end(service: Service, models: dict[str, str], started: float) -> None:
    """One line per example as its model ends: its status, time and metric (or why it failed)."""
    waiting = dict(models)
    while waiting:
        time.sleep(1.0)
        for name, model_id in list(waiting.items()):
            model = service.models.get(model_id)
            if model.status.value in ("PENDING", "INPROGRESS"):
                continue
            del waiting[name]
            took = f"after {time.monotonic() - started:.0f} s"
            if model.status.value == "COMPLETED":
                _say(f"example {name}: COMPLETED {took}: {_metric(model.metrics)}; try: mlsvc models describe {name}")
            else:
                _say(f"example {name}: {model.status.value} {took}: {model.message}")
    if models:
        _say("the examples are ready")


def _metric(metrics: dict[str, Any]) -> str:
    name = metrics.get("selection_metric")
    value = metrics.get(name) if name else None
    if value is None:
        value = metrics.get("validation_score")
    return f"{name} {value:.4f}" if isinstance(value, int | float) else f"{name or 'score'} n/a"


def _say(line: str) -> None:
    print(line, flush=True)


def _print_start(settings: Settings, specs: list[dict[str, Any]]) -> None:
    url = f"http://{settings.host}:{settings.port}"
    names = ", ".join(spec["name"] for spec in specs)
    print(
        f"""
mlsvc is serving on {url}
  API docs:   {url}/docs
  MLflow UI:  {_mlflow_command()} ui --backend-store-uri '{settings.mlflow_tracking_uri}'
The examples ({names}) train in the background on a new store (a line is printed as each completes). Then try:
  curl -s -XPOST {url}/v1/models/churn/predict -H 'content-type: application/json' \\
    -d '{{"record": {{"tenure_months": 2, "contract": "month-to-month"}}}}'
  mlsvc predict churn '{{"tenure_months": 2, "contract": "month-to-month"}}'
  python -c "import mlsvc.client as m; print(m.Client('{url}').predict('churn', {{'tenure_months': 2}}))"
  curl -s -XPOST {url}/v1/models/recommendation/predict -H 'content-type: application/json' \\
    -d '{{"user_id": "U00042", "k": 5}}'
Follow a model while it trains: mlsvc models get churn  (or curl -s {url}/v1/models/churn)
""",
        flush=True,
    )


def _mlflow_command() -> str:
    """The mlflow command of this environment (the venv's, which has the store's driver), else the one on PATH."""
    beside = Path(sys.executable).parent / "mlflow"
    if not beside.exists():
        return "mlflow"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)
