"""`mlsvc serve | worker | datasources … | models … | predict`: the command line, on the SDK."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MLSVC_URL", metavar="URL", help="The server's base URL.")]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON for scripts instead of tables.")]
WaitOpt = Annotated[
    bool, typer.Option("--wait", metavar="", help="Wait until COMPLETED, showing progress and the message on stderr.")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="How long --wait waits.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", metavar="KEY=VALUE", help="A tag; repeat for more.")]
UntagOpt = Annotated[list[str] | None, typer.Option("--untag", metavar="KEY", help="Remove a tag; repeat for more.")]
TagFilterOpt = Annotated[
    str | None, typer.Option("--tag", metavar="KEY[=VALUE]", help="Only those with this tag (and value).")
]
LimitOpt = Annotated[int, typer.Option("--limit", metavar="N", help="List at most N.")]
NameOpt = Annotated[str | None, typer.Option("--name", metavar="NAME", help="A name to show instead of the id.")]
IdOpt = Annotated[str | None, typer.Option("--id", metavar="ID", help="Choose the id (safe to retry).")]
StatusOpt = Annotated[
    str | None, typer.Option("--status", metavar="STATUS", help="PENDING, INPROGRESS, COMPLETED, FAILED or DELETED.")
]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="The model: id, name, name:VERSION or name:ALIAS.")]
RefArg = Annotated[str, typer.Argument(metavar="REF", help="The model: id, name, name:VERSION or name:ALIAS.")]
DataSourceArg = Annotated[str, typer.Argument(metavar="DATASOURCE_ID", help="The datasource's id.")]
EvaluationArg = Annotated[str, typer.Argument(metavar="EVALUATION_ID", help="The evaluation's id.")]
BatchArg = Annotated[str, typer.Argument(metavar="BATCH_ID", help="The batch prediction's id.")]

# The API's names for what a command's options set, so that a refusal names the option the user typed.
DATASOURCE_FIELDS = {
    "data_uri": "DATA_URI",
    "schema_uri": "--schema-uri",
    "row_id": "--row-id",
    "missing_values": "--missing-values",
}
MODEL_FIELDS = {
    "datasource_id": "--datasource",
    "time_budget_s": "--time-budget",
    "model_type": "--model-type",
    "items_datasource_id": "--items-datasource",
    "roles": "--role",
    "score_threshold": "--threshold",
}
EVALUATION_FIELDS = {"datasource_id": "--datasource"}
BATCH_FIELDS = {"datasource_id": "--datasource", "data_uri": "--data", "output_uri": "OUTPUT_URI", "row_id": "--row-id"}
DELETE_MODEL_FIELDS = {"force=true": "--force"}


@contextmanager
def _errors(fields: Mapping[str, str] | None = None) -> Iterator[None]:
    """Errors as one readable line and a meaningful exit code, never a traceback; a refusal of what the user
    typed names the command's options (``fields``: the API's field → the option) rather than the API's fields."""
    from mlsvc.client import APIConnectionError, NotFoundError, ResourceFailedError, WaitTimeoutError

    try:
        yield
    except NotFoundError as exc:
        _fail(f"not found: {exc.message}", EXIT_NOT_FOUND)
    except MlsvcAPIError as exc:
        if exc.status_code >= 500:
            _fail(f"{exc.code}: {exc.message}", EXIT_ERROR)
        _fail(f"{exc.code}: {_in_cli_terms(exc.message, fields or {})}", EXIT_USAGE)
    except ResourceFailedError as exc:
        _fail(f"failed: {exc}", EXIT_FAILED)
    except WaitTimeoutError as exc:
        _fail(f"timed out: {exc}", EXIT_TIMEOUT)
    except APIConnectionError as exc:
        _fail(str(exc), EXIT_CONNECTION)
    except MlsvcClientError as exc:
        _fail(str(exc), EXIT_ERROR)


def _in_cli_terms(message: str, fields: Mapping[str, str]) -> str:
    """``"give exactly one of 'datasource_id' or 'data_uri'"`` → ``"give exactly one of --datasource or --data"``."""
    for field, option in fields.items():
        message = re.sub(rf"(?<![\w-])'?{re.escape(field)}'?(?![\w-])", option, message)
    # The server's hint for moving an alias, as the command that does it.
    return re.sub(r"PUT /v1/models/([^/\s]+)/aliases/ALIAS", r"mlsvc models alias \1 ALIAS VERSION", message)


def _fail(message: str, code: int) -> NoReturn:
    # The message as text, not markup: a server's "['production']" must print as it is.
    err.print(Text.assemble(("error", "red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _client(url: str | None) -> Client:
    return Client(url)


def _tags(values: list[str] | None, option: str = "--tag", form: str = "key=value") -> dict[str, str] | None:
    """``KEY=VALUE`` options as a dict."""
    if not values:
        return None
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            _fail(f"{option} {value!r} must be {form}", EXIT_USAGE)
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


def _wait(get: Callable[[], R], timeout: float) -> R:
    """Wait with the SDK's waiter, shown on stderr: a bar with the resource's message on a terminal, plain lines
    in a log (CI, a pipe), so a wait is never silent; stdout keeps only the result (tables or --json)."""
    return wait_for(get, timeout=timeout, poll_interval=0.5, progress=True)


def _list(items: Iterator[Any], limit: int, as_json: bool, columns: list[str]) -> None:
    """The first ``limit`` items, as JSON or as a table of ``columns``."""
    taken = list(_take(items, limit))
    if as_json:
        print(json.dumps([i.model_dump(mode="json", by_alias=True) for i in taken], indent=2))
    else:
        _summary_table(taken, columns)


def _created(collection: Any, resource: R, wait: bool, timeout: float) -> R:
    """A resource just created; with --wait, as it is once COMPLETED."""
    return _wait(lambda: collection.get(resource.id), timeout) if wait else resource


def _summary_table(items: list[Any], columns: list[str]) -> None:
    table = Table(*columns)
    for item in items:
        data = item.model_dump(mode="json", by_alias=True)
        data["metric"] = _main_metric(data)  # one column for a model's or an evaluation's headline figure
        table.add_row(*[Text(_cell(c, data.get(c))) for c in columns])
    out.print(table)


def _cell(key: str, value: Any) -> str:
    """A value as a person reads it: progress as a percentage, lists and tags as words, metrics as name and value."""
    if value is None:
        return ""
    if key == "progress" and isinstance(value, int | float):
        return f"{value:.0%}"
    if key.endswith("_at") and isinstance(value, str):
        return f"{value[:19].replace('T', ' ')} UTC"  # the API's ISO 8601 times are UTC; to the second
    if key == "metrics" and isinstance(value, dict):
        return _metrics(value)
    if isinstance(value, dict) and all(isinstance(v, str | int | float | None) for v in value.values()):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(_number(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return _number(value)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics(metrics: dict[str, Any]) -> str:
    """One metric a line, the one the model was selected by first: ``BinaryAUC 0.8435``."""
    first = metrics.get("selection_metric")
    order = [first, *[k for k in metrics if k not in (first, "selection_metric")]]
    lines = []
    for key in order:
        if key not in metrics:
            continue
        value = metrics[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_number(v)}" for k, v in value.items())
        lines.append(f"{key} {_number(value)}")
    return "\n".join(lines)


def _main_metric(data: dict[str, Any]) -> str | None:
    """A model's selection metric on its held-out rows, or an evaluation's metric: ``BinaryAUC 0.8435``."""
    metrics = data.get("metrics") or {}
    name = data.get("metric") or metrics.get("selection_metric")
    value = data.get("value") if data.get("metric") else metrics.get(name)
    return f"{name} {_number(value)}" if name and isinstance(value, int | float) else None


SHOWN_FIELDS = (
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
)


def _show_resource(resource: Any) -> None:
    data = resource.model_dump(mode="json", by_alias=True)
    table = Table(show_header=False, box=None)
    for key in SHOWN_FIELDS:
        if key in data and data[key] not in (None, "", [], {}):
            table.add_row(Text(key, style="bold"), Text(_cell(key, data[key])))
    out.print(table)


# --- processes ---


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(metavar="HOST", help="Address to bind (MLSVC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="Port (MLSVC_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(metavar="N", help="Job worker processes (MLSVC_WORKERS).")] = None,
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
    data_uri: Annotated[
        str, typer.Argument(metavar="DATA_URI", help="CSV file or prefix: a local path, file:// or s3://.")
    ],
    url: UrlOpt = None,
    name: NameOpt = None,
    target: Annotated[str | None, typer.Option(metavar="COLUMN", help="The column to predict.")] = None,
    row_id: Annotated[str | None, typer.Option(metavar="COLUMN", help="A column that identifies rows.")] = None,
    schema_uri: Annotated[str | None, typer.Option(metavar="URI", help="An Amazon ML .schema file.")] = None,
    missing_values: Annotated[
        str | None,
        typer.Option(
            metavar="TOKENS",
            help="Comma-separated tokens read as missing in every column (blank cells always are); '' for none.",
        ),
    ] = None,
    id: IdOpt = None,
    tag: TagOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Register a CSV datasource; a job infers its schema and statistics."""
    with _errors(DATASOURCE_FIELDS):
        client = _client(url)
        tokens = None if missing_values is None else [t for t in missing_values.split(",") if t.strip()]
        ds = client.datasources.create(
            data_uri,
            id=id,
            name=name,
            target=target,
            row_id=row_id,
            schema_uri=schema_uri,
            missing_values=tokens,
            tags=_tags(tag),
        )
        ds = _created(client.datasources, ds, wait, timeout)
        _emit(ds, as_json, _show_resource)


@datasources_app.command("list")
def datasources_list(
    url: UrlOpt = None,
    status: StatusOpt = None,
    name_prefix: Annotated[
        str | None, typer.Option(metavar="PREFIX", help="Only those whose name starts with PREFIX.")
    ] = None,
    tag: TagFilterOpt = None,
    limit: LimitOpt = 100,
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
def datasources_get(datasource_id: DataSourceArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show one datasource."""
    with _errors():
        _emit(_client(url).datasources.get(datasource_id), as_json, _show_resource)


@datasources_app.command("describe")
def datasources_describe(datasource_id: DataSourceArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show a datasource's schema and statistics as tables."""
    from mlsvc.describe import describe_datasource

    with _errors():
        ds = _client(url).datasources.get(datasource_id)
        _emit(ds, as_json, lambda d: describe_datasource(out, d))


@datasources_app.command("update")
def datasources_update(
    datasource_id: DataSourceArg,
    url: UrlOpt = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="A new name.")] = None,
    tag: TagOpt = None,
    untag: UntagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename a datasource or change its tags."""
    with _errors():
        tags = _tag_changes(tag, untag)
        _emit(_client(url).datasources.update(datasource_id, name=name, tags=tags), as_json, _show_resource)


@datasources_app.command("delete")
def datasources_delete(datasource_id: DataSourceArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a datasource (it stays readable as DELETED)."""
    with _errors():
        _emit(_client(url).datasources.delete(datasource_id), as_json, _show_resource)


# --- models ---


@models_app.command("create")
def models_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The model's name; training again makes a new version.")],
    datasource_id: Annotated[
        str, typer.Option("--datasource", metavar="ID", help="A COMPLETED datasource to train on.")
    ],
    url: UrlOpt = None,
    target: Annotated[
        str | None, typer.Option(metavar="COLUMN", help="The column to predict (else the datasource's).")
    ] = None,
    model_type: Annotated[
        str | None, typer.Option(metavar="TYPE", help="BINARY, MULTICLASS, REGRESSION or RECOMMENDATION.")
    ] = None,
    time_budget_s: Annotated[
        float | None, typer.Option("--time-budget", metavar="SECONDS", help="How long the search may take.")
    ] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Seed of the search, for repeatable runs.")] = None,
    id: IdOpt = None,
    k: Annotated[int | None, typer.Option("--k", metavar="N", help="RECOMMENDATION: items per list.")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            metavar="ROLE=COLUMN",
            help="RECOMMENDATION: user=COL, item=COL, rating=COL or timestamp=COL; repeat.",
        ),
    ] = None,
    items_datasource: Annotated[
        str | None, typer.Option("--items-datasource", metavar="ID", help="RECOMMENDATION: item attributes.")
    ] = None,
    tag: TagOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 1800.0,
    as_json: JsonOpt = False,
) -> None:
    """Train the next version of a model."""
    with _errors(MODEL_FIELDS):
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
            roles=_tags(role, "--role", "role=column"),
            items_datasource_id=items_datasource,
        )
        model = _created(client.models, model, wait, timeout)
        _emit(model, as_json, _show_resource)


@models_app.command("list")
def models_list(
    url: UrlOpt = None,
    status: StatusOpt = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Only versions of this name.")] = None,
    tag: TagFilterOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """List models, newest first."""
    with _errors():
        _list(
            _client(url).models.iter(status=status, name=name, tag=tag),
            limit,
            as_json,
            [
                "id",
                "name",
                "version",
                "status",
                "progress",
                "message",
                "model_type",
                "metric",
                "aliases",
                "created_at",
            ],
        )


@models_app.command("get")
def models_get(ref: RefArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show one model."""
    with _errors():
        _emit(_client(url).models.get(ref), as_json, _show_resource)


@models_app.command("alias")
def models_alias(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The model's name.")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="A word, e.g. production.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version it points at.")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS (e.g. production) at VERSION of NAME."""
    with _errors():
        _emit(_client(url).models.set_alias(name, alias, version), as_json, _show_resource)


@models_app.command("update")
def models_update(
    ref: RefArg,
    url: UrlOpt = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", metavar="SCORE", help="A BINARY model's score threshold, 0–1.")
    ] = None,
    tag: TagOpt = None,
    untag: UntagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a model's score threshold or tags."""
    with _errors(MODEL_FIELDS):
        tags = _tag_changes(tag, untag)
        _emit(_client(url).models.update(ref, score_threshold=threshold, tags=tags), as_json, _show_resource)


@models_app.command("delete")
def models_delete(
    ref: RefArg,
    url: UrlOpt = None,
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Also a version an alias points at; its aliases go with it.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a model version (it stays readable as DELETED)."""
    with _errors(DELETE_MODEL_FIELDS):
        _emit(_client(url).models.delete(ref, force=force), as_json, _show_resource)


@models_app.command("describe")
def models_describe(ref: RefArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
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
    model: ModelArg,
    datasource_id: Annotated[
        str, typer.Option("--datasource", metavar="ID", help="A COMPLETED datasource that has the target.")
    ],
    url: UrlOpt = None,
    name: NameOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 1800.0,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on a labelled datasource."""
    from mlsvc.describe import describe_evaluation

    with _errors(EVALUATION_FIELDS):
        client = _client(url)
        evaluation = client.evaluations.create(model, datasource_id, name=name)
        evaluation = _created(client.evaluations, evaluation, wait, timeout)
        _emit(
            evaluation, as_json, lambda e: describe_evaluation(out, e) if e.status == "COMPLETED" else _show_resource(e)
        )


@evaluations_app.command("get")
def evaluations_get(evaluation_id: EvaluationArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show an evaluation: its metric against the baseline, and its insights."""
    from mlsvc.describe import describe_evaluation

    with _errors():
        _emit(_client(url).evaluations.get(evaluation_id), as_json, lambda e: describe_evaluation(out, e))


@evaluations_app.command("list")
def evaluations_list(
    url: UrlOpt = None,
    model_id: Annotated[str | None, typer.Option("--model-id", metavar="ID", help="Only of this model.")] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """List evaluations, newest first."""
    with _errors():
        _list(
            _client(url).evaluations.iter(model_id=model_id),
            limit,
            as_json,
            ["id", "name", "status", "progress", "metric", "model_id", "created_at"],
        )


@evaluations_app.command("delete")
def evaluations_delete(evaluation_id: EvaluationArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete an evaluation (it stays readable as DELETED)."""
    with _errors():
        _emit(_client(url).evaluations.delete(evaluation_id), as_json, _show_resource)


# --- batch predictions ---


@batch_app.command("create")
def batch_create(
    model: ModelArg,
    output_uri: Annotated[
        str, typer.Argument(metavar="OUTPUT_URI", help="A folder: s3://bucket/prefix/ or a local path.")
    ],
    datasource_id: Annotated[
        str | None, typer.Option("--datasource", metavar="ID", help="A COMPLETED datasource to score.")
    ] = None,
    data_uri: Annotated[
        str | None, typer.Option("--data", metavar="URI", help="Or a CSV file or prefix to score.")
    ] = None,
    row_id: Annotated[
        str | None, typer.Option(metavar="COLUMN", help="With --data: a column to copy as the row id.")
    ] = None,
    url: UrlOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 7200.0,
    as_json: JsonOpt = False,
) -> None:
    """Predict for every row of a datasource (--datasource) or a CSV (--data), into files under OUTPUT_URI."""
    # Checked here, so that the refusal names these options rather than the API's fields.
    if (datasource_id is None) == (data_uri is None):
        _fail("give exactly one of --datasource ID or --data URI: what to score", EXIT_USAGE)
    if row_id is not None and data_uri is None:
        _fail("--row-id goes with --data: a datasource's rows carry the row id of its schema", EXIT_USAGE)
    with _errors(BATCH_FIELDS):
        client = _client(url)
        batch = client.batch_predictions.create(
            model, output_uri, datasource_id=datasource_id, data_uri=data_uri, row_id=row_id
        )
        batch = _created(client.batch_predictions, batch, wait, timeout)
        _emit(batch, as_json, _show_batch)


@batch_app.command("get")
def batch_get(batch_id: BatchArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show a batch prediction: progress, rows, and where its files are."""
    with _errors():
        _emit(_client(url).batch_predictions.get(batch_id), as_json, _show_batch)


@batch_app.command("list")
def batch_list(url: UrlOpt = None, limit: LimitOpt = 100, as_json: JsonOpt = False) -> None:
    """List batch predictions, newest first."""
    with _errors():
        _list(
            _client(url).batch_predictions.iter(),
            limit,
            as_json,
            ["id", "name", "status", "progress", "rows_scored", "output_uri", "created_at"],
        )


@batch_app.command("delete")
def batch_delete(batch_id: BatchArg, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a batch prediction's record (its output files stay where they are)."""
    with _errors():
        _emit(_client(url).batch_predictions.delete(batch_id), as_json, _show_batch)


def _show_batch(batch: Any) -> None:
    _show_resource(batch)
    if batch.outputs:
        table = Table("input", "output", "rows")
        for o in batch.outputs:
            table.add_row(Text(o["input"]), Text(o["output"]), str(o["rows"]))
        out.print(table)
    if batch.manifest_uri:
        out.print(Text(f"manifest: {batch.manifest_uri}"))


# --- predictions ---


@app.command()
def predict(
    ref: RefArg,
    record: Annotated[
        str, typer.Argument(metavar="RECORD", help="A JSON object, a JSON list of objects, or - for stdin.")
    ],
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
        out.print(Text(f"model {result.model_id} v{result.version}", style="bold"))
        table = Table("#", "prediction", "scores", "warnings")
        for number, p in enumerate(result.predictions or [], start=1):  # rows count from 1, as in `recommend`
            answer = p.predicted_label if p.predicted_label is not None else _number(p.predicted_value)
            scores = ", ".join(f"{k} {v:.3f}" for k, v in (p.predicted_scores or {}).items())
            table.add_row(str(number), Text(answer), Text(scores), Text("; ".join(p.warnings)))
        out.print(table)


@app.command()
def recommend(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A RECOMMENDATION model.")],
    user_id: Annotated[str, typer.Argument(metavar="USER_ID", help="The user.")],
    url: UrlOpt = None,
    k: Annotated[int | None, typer.Option("--k", metavar="N", help="How many items.")] = None,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", metavar="", help="Also items the user already interacted with.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Items a user is likely to want, best first."""
    with _errors():
        answer = _client(url).recommend(ref, user_id, k, exclude_seen=not include_seen)
        _emit_recommendations(answer, as_json, f"for user {user_id}", "an unknown user: popular items instead")


@app.command()
def similar(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A RECOMMENDATION model.")],
    item_id: Annotated[str, typer.Argument(metavar="ITEM_ID", help="The item.")],
    url: UrlOpt = None,
    k: Annotated[int | None, typer.Option("--k", metavar="N", help="How many items.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Items most like an item, best first."""
    with _errors():
        answer = _client(url).similar_items(ref, item_id, k)
        _emit_recommendations(
            answer, as_json, f"like item {item_id}", "an item without interactions: items alike by attributes"
        )


def _emit_recommendations(answer: Any, as_json: bool, subject: str, cold_start: str) -> None:
    if as_json:
        print(answer.model_dump_json(indent=2, exclude_none=True))
        return
    # A heading line, not the table's title: a title wraps at the width of the narrow table under it.
    out.print(Text(f"model {answer.model_id} v{answer.version}, {subject}", style="bold"))
    if answer.cold_start:
        out.print(Text(cold_start))
    table = Table("#", "item", "score")
    for number, r in enumerate(answer.recommendations or [], start=1):
        table.add_row(str(number), Text(r.item_id), f"{r.score:.4g}")
    out.print(table)


def _take(items: Iterator[Any], limit: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= limit:
            return
        yield item


if __name__ == "__main__":
    app()
