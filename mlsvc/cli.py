"""`mlsvc serve | worker | datasources … | models … | predict`: the command line, on the SDK."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlsvc.client import Client, MlsvcAPIError, MlsvcClientError
from mlsvc.client.client import wait_for
from mlsvc.resources import Resource

R = TypeVar("R", bound=Resource)

app = typer.Typer(
    help="mlsvc: a self-hosted machine-learning prediction service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
datasources_app = typer.Typer(help="CSV datasources: create, list, get, describe, delete.", no_args_is_help=True)
models_app = typer.Typer(help="Models: train, list, get, alias, delete.", no_args_is_help=True)
evaluations_app = typer.Typer(help="Evaluations: a model's metrics on labelled data.", no_args_is_help=True)
batch_app = typer.Typer(
    help="Batch predictions: score every row of a datasource or CSV into files.", no_args_is_help=True
)
app.add_typer(datasources_app, name="datasources")
app.add_typer(models_app, name="models")
app.add_typer(evaluations_app, name="evaluations")
app.add_typer(batch_app, name="batch")

# Piped output has no terminal width; keep ids and values whole rather than wrapped at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

# Exit codes a script can rely on.
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FAILED, EXIT_TIMEOUT, EXIT_CONNECTION = 1, 2, 3, 4, 5, 6

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MLSVC_URL", help="The server's base URL.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until COMPLETED, showing progress.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="key=value; repeat for more.")]
UntagOpt = Annotated[list[str] | None, typer.Option("--untag", help="Remove a tag key.")]


@contextmanager
def _errors() -> Iterator[None]:
    """Errors as one readable line and a meaningful exit code, never a traceback."""
    from mlsvc.client import APIConnectionError, NotFoundError, ResourceFailedError, WaitTimeoutError

    try:
        yield
    except NotFoundError as exc:
        _fail(f"not found: {exc.message}", EXIT_NOT_FOUND)
    except MlsvcAPIError as exc:
        _fail(f"{exc.code}: {exc.message}", EXIT_USAGE if exc.status_code < 500 else EXIT_ERROR)
    except ResourceFailedError as exc:
        _fail(f"failed: {exc}", EXIT_FAILED)
    except WaitTimeoutError as exc:
        _fail(f"timed out: {exc}", EXIT_TIMEOUT)
    except APIConnectionError as exc:
        _fail(str(exc), EXIT_CONNECTION)
    except MlsvcClientError as exc:
        _fail(str(exc), EXIT_ERROR)


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _client(url: str | None) -> Client:
    return Client(url)


def _tags(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            _fail(f"--tag {value!r} must be key=value", EXIT_USAGE)
        pairs[key] = val
    return pairs


def _tag_changes(tag: list[str] | None, untag: list[str] | None) -> dict[str, str | None] | None:
    changes: dict[str, str | None] = dict(_tags(tag) or {})
    changes.update(dict.fromkeys(untag or []))
    return changes or None


def _emit(resource: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        print(resource.model_dump_json(by_alias=True, indent=2))
    else:
        render(resource)


def _wait(get: Callable[[], R], timeout: float, as_json: bool) -> R:
    """Wait with the SDK's waiter; its progress bar only where a person watches (not with --json or a pipe)."""
    return wait_for(get, timeout=timeout, poll_interval=0.5, progress=not as_json and sys.stderr.isatty())


def _list(items: Iterator[Any], limit: int, as_json: bool, columns: list[str]) -> None:
    """The first ``limit`` items, as JSON or as a table of ``columns``."""
    taken = list(_take(items, limit))
    if as_json:
        print(json.dumps([i.model_dump(mode="json", by_alias=True) for i in taken], indent=2))
    else:
        _summary_table(taken, columns)


def _created(collection: Any, resource: R, wait: bool, timeout: float, as_json: bool) -> R:
    """A resource just created; with --wait, as it is once COMPLETED."""
    return _wait(lambda: collection.get(resource.id), timeout, as_json) if wait else resource


def _summary_table(items: list[Any], columns: list[str]) -> None:
    table = Table(*columns)
    for item in items:
        data = item.model_dump(mode="json", by_alias=True)
        table.add_row(*[_cell(data.get(c)) for c in columns])
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | dict):
        return json.dumps(value)[:60]
    return str(value)


def _show_resource(resource: Any) -> None:
    data = resource.model_dump(mode="json", by_alias=True)
    table = Table(show_header=False, box=None)
    for key in (
        "id",
        "name",
        "version",
        "status",
        "message",
        "progress",
        "model_type",
        "data_uri",
        "target",
        "row_count",
        "used_row_count",
        "invalid_row_count",
        "score_threshold",
        "aliases",
        "metrics",
        "model_id",
        "datasource_id",
        "output_uri",
        "rows_total",
        "rows_scored",
        "rows_with_invalid_values",
        "metric",
        "value",
        "vs_baseline",
        "created_at",
        "updated_at",
        "tags",
    ):
        if key in data and data[key] not in (None, "", [], {}):
            table.add_row(f"[bold]{key}[/bold]", _cell(data[key]) if key != "metrics" else json.dumps(data[key]))
    out.print(table)


# --- processes ---


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (MLSVC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MLSVC_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Job worker processes (MLSVC_WORKERS).")] = None,
) -> None:
    """Serve the API and run job workers beside it."""
    from dataclasses import replace

    from mlsvc.config import Settings
    from mlsvc.server.main import serve as run_server

    settings = Settings.from_env()
    settings = replace(settings, host=host or settings.host, port=port or settings.port)
    run_server(settings, workers)


@app.command()
def worker() -> None:
    """Run a job worker on its own (another host, the same database)."""
    from mlsvc.config import Settings
    from mlsvc.jobs.worker import worker_main

    settings = Settings.from_env()
    print(settings.describe("job worker: claims jobs from the metadata store; no API here"), flush=True)
    worker_main(settings)


# --- datasources ---


@datasources_app.command("create")
def datasources_create(
    data_uri: Annotated[str, typer.Argument(help="CSV file or prefix: a local path, file:// or s3://.")],
    url: UrlOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    target: Annotated[str | None, typer.Option(help="The column to predict.")] = None,
    row_id: Annotated[str | None, typer.Option(help="A column that identifies rows.")] = None,
    schema_uri: Annotated[str | None, typer.Option(help="An Amazon ML .schema file.")] = None,
    id: Annotated[str | None, typer.Option(help="Choose the id (safe to retry).")] = None,
    tag: TagOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Register a CSV datasource; a job infers its schema and statistics."""
    with _errors():
        client = _client(url)
        ds = client.datasources.create(
            data_uri, id=id, name=name, target=target, row_id=row_id, schema_uri=schema_uri, tags=_tags(tag)
        )
        ds = _created(client.datasources, ds, wait, timeout, as_json)
        _emit(ds, as_json, _show_resource)


@datasources_app.command("list")
def datasources_list(
    url: UrlOpt = None,
    status: Annotated[str | None, typer.Option()] = None,
    name_prefix: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option(help="key or key=value")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List datasources, newest first."""
    with _errors():
        _list(
            _client(url).datasources.iter(status=status, name_prefix=name_prefix, tag=tag),
            limit,
            as_json,
            ["id", "name", "status", "progress", "row_count", "target", "created_at"],
        )


@datasources_app.command("get")
def datasources_get(datasource_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show one datasource."""
    with _errors():
        _emit(_client(url).datasources.get(datasource_id), as_json, _show_resource)


@datasources_app.command("describe")
def datasources_describe(datasource_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show a datasource's schema and statistics as tables."""
    from mlsvc.describe import describe_datasource

    with _errors():
        ds = _client(url).datasources.get(datasource_id)
        _emit(ds, as_json, lambda d: describe_datasource(out, d))


@datasources_app.command("update")
def datasources_update(
    datasource_id: str,
    url: UrlOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    tag: TagOpt = None,
    untag: UntagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename a datasource or change its tags."""
    with _errors():
        tags = _tag_changes(tag, untag)
        _emit(_client(url).datasources.update(datasource_id, name=name, tags=tags), as_json, _show_resource)


@datasources_app.command("delete")
def datasources_delete(datasource_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a datasource (it stays readable as DELETED)."""
    with _errors():
        _emit(_client(url).datasources.delete(datasource_id), as_json, _show_resource)


# --- models ---


@models_app.command("create")
def models_create(
    name: Annotated[str, typer.Argument(help="The model's name; training again makes a new version.")],
    datasource_id: Annotated[str, typer.Option("--datasource", help="A COMPLETED datasource id.")],
    url: UrlOpt = None,
    target: Annotated[str | None, typer.Option()] = None,
    model_type: Annotated[str | None, typer.Option(help="BINARY, MULTICLASS or REGRESSION.")] = None,
    time_budget_s: Annotated[float | None, typer.Option("--time-budget")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    id: Annotated[str | None, typer.Option(help="Choose the id (safe to retry).")] = None,
    k: Annotated[int | None, typer.Option("--k", help="RECOMMENDATION: items per list.")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="RECOMMENDATION: user=COL, item=COL, rating=COL or timestamp=COL; repeat."),
    ] = None,
    items_datasource: Annotated[
        str | None, typer.Option("--items-datasource", help="RECOMMENDATION: item attributes.")
    ] = None,
    tag: TagOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 1800.0,
    as_json: JsonOpt = False,
) -> None:
    """Train the next version of a model."""
    with _errors():
        client = _client(url)
        model = client.models.create(
            name,
            datasource_id,
            id=id,
            target=target,
            model_type=model_type,
            time_budget_s=time_budget_s,
            seed=seed,
            tags=_tags(tag),
            k=k,
            roles=_tags(role),
            items_datasource_id=items_datasource,
        )
        model = _created(client.models, model, wait, timeout, as_json)
        _emit(model, as_json, _show_resource)


@models_app.command("list")
def models_list(
    url: UrlOpt = None,
    status: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="Only versions of this name.")] = None,
    tag: Annotated[str | None, typer.Option(help="key or key=value")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List models, newest first."""
    with _errors():
        _list(
            _client(url).models.iter(status=status, name=name, tag=tag),
            limit,
            as_json,
            ["id", "name", "version", "status", "model_type", "aliases", "created_at"],
        )


@models_app.command("get")
def models_get(
    ref: Annotated[str, typer.Argument(help="id, name, name:VERSION or name:ALIAS")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one model."""
    with _errors():
        _emit(_client(url).models.get(ref), as_json, _show_resource)


@models_app.command("alias")
def models_alias(name: str, alias: str, version: int, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Point ALIAS (e.g. production) at VERSION of NAME."""
    with _errors():
        _emit(_client(url).models.set_alias(name, alias, version), as_json, _show_resource)


@models_app.command("update")
def models_update(
    ref: str,
    url: UrlOpt = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="A BINARY model's score threshold, 0–1.")
    ] = None,
    tag: TagOpt = None,
    untag: UntagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a model's score threshold or tags."""
    with _errors():
        tags = _tag_changes(tag, untag)
        _emit(_client(url).models.update(ref, score_threshold=threshold, tags=tags), as_json, _show_resource)


@models_app.command("delete")
def models_delete(ref: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a model version (it stays readable as DELETED)."""
    with _errors():
        _emit(_client(url).models.delete(ref), as_json, _show_resource)


@models_app.command("describe")
def models_describe(
    ref: Annotated[str, typer.Argument(help="id, name, name:VERSION or name:ALIAS")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's leaderboard, its holdout evaluation and how it was promoted."""
    from mlsvc.describe import describe_model

    with _errors():
        client = _client(url)
        model = client.models.get(ref)
        evaluation = client.evaluations.get(model.evaluation_id) if model.evaluation_id else None
        if as_json:
            print(
                json.dumps(
                    {
                        "model": model.model_dump(mode="json"),
                        "evaluation": evaluation.model_dump(mode="json") if evaluation else None,
                    },
                    indent=2,
                )
            )
        else:
            describe_model(out, model, evaluation)


# --- evaluations ---


@evaluations_app.command("create")
def evaluations_create(
    model: Annotated[str, typer.Argument(help="The model: id, name, name:VERSION or name:ALIAS.")],
    datasource_id: Annotated[str, typer.Option("--datasource", help="A labelled datasource.")],
    url: UrlOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 1800.0,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on a labelled datasource."""
    from mlsvc.describe import describe_evaluation

    with _errors():
        client = _client(url)
        evaluation = client.evaluations.create(model, datasource_id, name=name)
        evaluation = _created(client.evaluations, evaluation, wait, timeout, as_json)
        _emit(
            evaluation, as_json, lambda e: describe_evaluation(out, e) if e.status == "COMPLETED" else _show_resource(e)
        )


@evaluations_app.command("get")
def evaluations_get(evaluation_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show an evaluation: its metric against the baseline, and its insights."""
    from mlsvc.describe import describe_evaluation

    with _errors():
        _emit(_client(url).evaluations.get(evaluation_id), as_json, lambda e: describe_evaluation(out, e))


@evaluations_app.command("list")
def evaluations_list(
    url: UrlOpt = None,
    model_id: Annotated[str | None, typer.Option("--model-id")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List evaluations, newest first."""
    with _errors():
        _list(
            _client(url).evaluations.iter(model_id=model_id),
            limit,
            as_json,
            ["id", "name", "status", "metric", "value", "model_id", "created_at"],
        )


@evaluations_app.command("delete")
def evaluations_delete(evaluation_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete an evaluation (it stays readable as DELETED)."""
    with _errors():
        _emit(_client(url).evaluations.delete(evaluation_id), as_json, _show_resource)


# --- batch predictions ---


@batch_app.command("create")
def batch_create(
    model: Annotated[str, typer.Argument(help="The model: id, name, name:VERSION or name:ALIAS.")],
    output_uri: Annotated[str, typer.Argument(help="A folder: s3://bucket/prefix/ or a local path.")],
    datasource_id: Annotated[str | None, typer.Option("--datasource")] = None,
    data_uri: Annotated[str | None, typer.Option("--data", help="A CSV file or prefix.")] = None,
    row_id: Annotated[str | None, typer.Option(help="With --data: a column to copy as the row id.")] = None,
    url: UrlOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 7200.0,
    as_json: JsonOpt = False,
) -> None:
    """Predict for every row of a datasource (--datasource) or a CSV (--data), into files under OUTPUT_URI."""
    with _errors():
        client = _client(url)
        batch = client.batch_predictions.create(
            model, output_uri, datasource_id=datasource_id, data_uri=data_uri, row_id=row_id
        )
        batch = _created(client.batch_predictions, batch, wait, timeout, as_json)
        _emit(batch, as_json, _show_batch)


@batch_app.command("get")
def batch_get(batch_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show a batch prediction: progress, rows, and where its files are."""
    with _errors():
        _emit(_client(url).batch_predictions.get(batch_id), as_json, _show_batch)


@batch_app.command("list")
def batch_list(url: UrlOpt = None, limit: Annotated[int, typer.Option()] = 100, as_json: JsonOpt = False) -> None:
    """List batch predictions, newest first."""
    with _errors():
        _list(
            _client(url).batch_predictions.iter(),
            limit,
            as_json,
            ["id", "name", "status", "progress", "rows_scored", "output_uri", "created_at"],
        )


@batch_app.command("delete")
def batch_delete(batch_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a batch prediction's record (its output files stay where they are)."""
    with _errors():
        _emit(_client(url).batch_predictions.delete(batch_id), as_json, _show_batch)


def _show_batch(batch: Any) -> None:
    _show_resource(batch)
    if batch.outputs:
        table = Table("input", "output", "rows")
        for o in batch.outputs:
            table.add_row(o["input"], o["output"], str(o["rows"]))
        out.print(table)
    if batch.manifest_uri:
        out.print(f"manifest: {batch.manifest_uri}")


# --- predictions ---


@app.command()
def predict(
    ref: Annotated[str, typer.Argument(help="Model: id, name, name:VERSION or name:ALIAS.")],
    record: Annotated[str, typer.Argument(help="A JSON object, a JSON list of objects, or - for stdin.")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Real-time predictions for one record or a list."""
    text = sys.stdin.read() if record == "-" else record
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"the record is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(value, dict | list):
        _fail("the record must be a JSON object or a list of objects", EXIT_USAGE)
    with _errors():
        client = _client(url)
        result = client.predict(ref, value) if isinstance(value, dict) else client.predict(ref, records=value)
        if as_json:
            print(result.model_dump_json(indent=2, exclude_none=True))
            return
        table = Table("#", "prediction", "scores", "warnings", title=f"model {result.model_id} v{result.version}")
        for i, p in enumerate(result.predictions or []):
            answer = p.predicted_label if p.predicted_label is not None else _cell(p.predicted_value)
            scores = ", ".join(f"{k}: {v:.3f}" for k, v in (p.predicted_scores or {}).items())
            table.add_row(str(i), answer, scores, "; ".join(p.warnings))
        out.print(table)


@app.command()
def recommend(
    ref: Annotated[str, typer.Argument(help="A RECOMMENDATION model.")],
    user_id: Annotated[str, typer.Argument(help="The user.")],
    url: UrlOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="How many items.")] = None,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Also items the user already interacted with.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Items a user is likely to want, best first."""
    with _errors():
        answer = _client(url).recommend(ref, user_id, k, exclude_seen=not include_seen)
        _emit_recommendations(answer, as_json, f"for user {user_id}")


@app.command()
def similar(
    ref: Annotated[str, typer.Argument(help="A RECOMMENDATION model.")],
    item_id: Annotated[str, typer.Argument(help="The item.")],
    url: UrlOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="How many items.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Items most like an item, best first."""
    with _errors():
        answer = _client(url).similar_items(ref, item_id, k)
        _emit_recommendations(answer, as_json, f"like item {item_id}")


def _emit_recommendations(answer: Any, as_json: bool, subject: str) -> None:
    if as_json:
        print(answer.model_dump_json(indent=2, exclude_none=True))
        return
    note = " (unknown: popular or similar-by-attribute items)" if answer.cold_start else ""
    table = Table("#", "item", "score", title=f"model {answer.model_id} v{answer.version}, {subject}{note}")
    for i, r in enumerate(answer.recommendations or [], start=1):
        table.add_row(str(i), r.item_id, f"{r.score:.4g}")
    out.print(table)


def _take(items: Iterator[Any], limit: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= limit:
            return
        yield item


if __name__ == "__main__":
    app()
