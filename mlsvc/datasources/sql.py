"""SQL datasources: which database servers a request may reach, and a query's result staged as CSV through the
object store, read from there by the datasource job like any other CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO

from mlsvc.config import Settings, split_host_port
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import JobCancelled, LeaseLost, MetadataStore
from mlsvc.objects import ObjectStore
from mlsvc.objects.staging import StagedOutputs
from mlsvc.security.uris import UriValidator

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult
    from sqlalchemy.exc import DBAPIError

    from mlsvc.jobs.context import JobContext
    from mlsvc.planes import Planes
    from mlsvc.resources import SqlSource

log = logging.getLogger("mlsvc.datasources.sql")

# Where a SQL datasource's password waits for its job, in the stored resource (never in its API shape, which has
# no such field). The job queue is durable and its workers are other processes, maybe on other hosts, so the
# password has to be stored somewhere they read; it is kept only there, and dropped as soon as the job ends: in
# the transaction that records its result, when it fails or is stopped, and when the datasource is deleted.
PASSWORD_FIELD = "sql_password"

QUERY_SHARE = 0.3  # of the job's progress: running the query and staging its rows; reading the CSV takes the rest
HALF_AT_ROWS = 100_000  # the query's share of the progress is half gone at this many rows (its total is unknown)
BATCH_ROWS = 1000  # rows fetched from the server-side cursor at a time: what memory holds of the result
REPORT_EVERY_S = 1.0  # how often the rows fetched are written to the resource at most
CONNECT_TIMEOUT_S = 10
MESSAGE_LIMIT = 1000  # of a driver's message in a resource's message

Report = Callable[..., None]  # (fraction, **fields): progress on the resource
Read = Callable[["JobContext", Report], Mapping[str, Any]]


@dataclass(frozen=True)
class Engine:
    """One kind of database server: its SQLAlchemy driver, its default port, and the setting naming its servers."""

    label: str
    driver: str
    port: int
    setting: str
    identifier: str
    connect_args: Mapping[str, Any] = field(default_factory=dict)


ENGINES: dict[str, Engine] = {
    "mysql": Engine(
        "MySQL",
        "mysql+pymysql",
        3306,
        "MLSVC_RDS_INSTANCES",
        "RDS instance",
        {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"},
    ),
    "postgresql": Engine(
        "PostgreSQL",
        "postgresql+psycopg",
        5432,
        "MLSVC_REDSHIFT_CLUSTERS",
        "Redshift cluster",
        {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "mlsvc"},
    ),
}

# What a query that does not read starts with: named in the message when the database refuses it (PostgreSQL
# refuses them as a syntax error, since a server-side cursor can only be declared over a query).
_NOT_QUERIES = frozenset(
    {
        *("insert", "update", "delete", "merge", "replace", "upsert", "create", "alter", "drop", "truncate"),
        *("rename", "grant", "revoke", "comment", "copy", "load", "lock", "call", "do", "set", "reset"),
        *("begin", "start", "commit", "rollback", "vacuum", "analyze", "reindex", "cluster", "refresh"),
    }
)
_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_MYSQL_BIT = 16  # pymysql's FIELD_TYPE.BIT: bytes that hold a number


# --- which servers a request may reach ---


def engine_of(name: str) -> Engine:
    if name not in ENGINES:
        raise MlsvcError(ErrorCode.VALIDATION_ERROR, f"unknown SQL engine '{name}'; engines are {', '.join(ENGINES)}")
    return ENGINES[name]


def instance_address(settings: Settings, engine: str, identifier: str) -> tuple[str, int]:
    """The (host, port) an operator configured for an RDS InstanceIdentifier (engine mysql) or a Redshift
    ClusterIdentifier (engine postgresql); a VALIDATION_ERROR naming the configured ones when it is unknown."""
    spec = engine_of(engine)
    configured = settings.rds_instances if engine == "mysql" else settings.redshift_clusters
    if identifier in configured:
        return configured[identifier]
    known = ", ".join(sorted(configured))
    raise MlsvcError(
        ErrorCode.VALIDATION_ERROR,
        f"unknown {spec.identifier} '{identifier}'; "
        + (f"{spec.setting} configures these: {known}" if known else f"none is configured ({spec.setting})"),
        {"instance": identifier, "configured": sorted(configured)},
    )


def host_allowed(settings: Settings, host: str, port: int) -> bool:
    """Whether MLSVC_SQL_HOSTS lets a request name this host and port."""
    host = host.strip("[]").lower()
    for entry in settings.sql_hosts:
        if entry == "*":
            return True
        try:
            allowed, allowed_port = split_host_port(entry)
        except ValueError:
            continue
        if allowed == host and allowed_port in (None, port):
            return True
    return False


_SAME_HOST = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}


def _own_databases(settings: Settings) -> set[tuple[str, int, str]]:
    """(host, port, database) of mlsvc's own metadata store and MLflow databases, where they are servers."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    own = set()
    for uri in {settings.database_url, settings.mlflow_tracking_uri, settings.mlflow_registry_uri}:
        try:
            url = make_url(uri)
        except ArgumentError:
            continue
        if url.host:
            port = url.port or (3306 if url.get_backend_name() in ("mysql", "mariadb") else 5432)
            own.add((_SAME_HOST.get(url.host.lower(), url.host.lower()), port, url.database or ""))
    return own


def _not_own_database(settings: Settings, host: str, port: int, database: str) -> None:
    """A caller must not read mlsvc's own records (other datasources' staged passwords among them)."""
    if (_SAME_HOST.get(host, host), port, database) in _own_databases(settings):
        raise MlsvcError(
            ErrorCode.HOST_NOT_ALLOWED,
            f"database '{database}' at {host}:{port} is mlsvc's own metadata or MLflow database; it cannot be a "
            "datasource",
        )


def server_address(settings: Settings, sql: Mapping[str, Any]) -> tuple[str, int]:
    """The (host, port) a SQL datasource's job connects to: its configured instance, or its host if allowed;
    never mlsvc's own databases."""
    host, port = _address(settings, sql)
    _not_own_database(settings, host.lower(), port, str(sql.get("database") or ""))
    return host, port


def _address(settings: Settings, sql: Mapping[str, Any]) -> tuple[str, int]:
    spec = engine_of(sql["engine"])
    if sql.get("instance"):
        return instance_address(settings, sql["engine"], sql["instance"])
    host, port = str(sql["host"]).strip("[]").lower(), int(sql.get("port") or spec.port)
    if not host_allowed(settings, host, port):
        raise MlsvcError(
            ErrorCode.HOST_NOT_ALLOWED,
            f"the database host {host}:{port} is not allowed: MLSVC_SQL_HOSTS lists the hosts a request may name "
            f"({', '.join(settings.sql_hosts)}); an operator adds it there, or names the server in {spec.setting} "
            "for requests to give as 'instance'",
            {"host": host, "port": port},
        )
    return host, port


def prepare(settings: Settings, uris: UriValidator, source: SqlSource, datasource_id: str) -> dict[str, Any]:
    """What a new SQL datasource is stored with: its staged CSV's URI, and the password its job needs. Refuses a
    server the request may not reach and a staging place it may not write (no I/O: the job tries the place)."""
    server_address(settings, source.model_dump())
    data_uri = uris.check(staged_csv_uri(uris.check(source.staging_uri), datasource_id))
    fields: dict[str, Any] = {"data_uri": data_uri}
    if source.password is not None:
        fields[PASSWORD_FIELD] = source.password.get_secret_value()
    return fields


def staged_csv_uri(staging_uri: str, datasource_id: str) -> str:
    """Where a datasource's query result is staged: ``<staging_uri>/<datasource id>.csv``."""
    return ObjectStore.join(staging_uri, f"{datasource_id}.csv")


def forget_password(metadata: MetadataStore, datasource_id: str) -> None:
    """Drop a SQL datasource's password from the store, if it is there (best effort: the caller's outcome matters
    more)."""
    try:
        found = metadata.find("datasource", datasource_id)
        if found is not None and found.get(PASSWORD_FIELD) is not None:
            metadata.update("datasource", datasource_id, {PASSWORD_FIELD: None})
    except Exception:
        log.warning("could not drop the password of datasource %s from the metadata store", datasource_id)


def discard(planes: Planes, ds: Mapping[str, Any]) -> None:
    """A datasource job that ended without its result (failed, cancelled, given up after its workers died) keeps
    no password: the worker calls this once it records the end."""
    forget_password(planes.metadata, ds["id"])


# --- the job ---


def query_then_read(ctx: JobContext, read: Read) -> Mapping[str, Any]:
    """A SQL datasource's job: stage the query's result at the datasource's ``data_uri``, then ``read`` it as the job
    reads any CSV (with progress after the query's share); the password is dropped however the job ends."""
    try:
        fetched = stage_query(ctx, lambda fraction, **fields: ctx.progress(QUERY_SHARE * fraction, **fields))
        result = read(
            ctx, lambda fraction, **fields: ctx.progress(QUERY_SHARE + (1 - QUERY_SHARE) * fraction, **fields)
        )
    except Exception as exc:
        if not _taken_over(exc):  # else another worker runs the job now, and needs the password
            forget_password(ctx.metadata, ctx.resource["id"])
        raise
    return {**result, "rows_fetched": fetched, PASSWORD_FIELD: None}  # dropped as the result is recorded


def _taken_over(exc: BaseException) -> bool:
    """Whether the job goes on in another worker (this one lost its lease), rather than ending here."""
    return isinstance(exc, LeaseLost) and not isinstance(exc, JobCancelled)


def stage_query(ctx: JobContext, report: Report) -> int:
    """Run the datasource's query read-only and write its rows, with a header of the column names, as a CSV at its
    ``data_uri``, seen there only once whole; the number of rows."""
    ds = ctx.resource
    sql, data_uri = ds["sql"], ds["data_uri"]
    host, port = server_address(ctx.settings, sql)
    # Written as a staged output: under a temporary name (an unfinished upload on S3), published at the end. What
    # an attempt whose worker died left is removed by the next one.
    staged = StagedOutputs(ctx.objects, data_uri.rsplit("/", 1)[0], ds["id"], ctx.claim.attempt, data_uri)
    staged.discard_earlier_attempts()
    _probe(ctx.objects, staged.area, sql["staging_uri"])
    held = staged.hold(data_uri)
    try:
        fetched = _query_into(held.stream, sql, host, port, ds.get(PASSWORD_FIELD), report)
        held.finish()
        held.publish()
    except BaseException as exc:
        held.abort()
        if not _taken_over(exc):  # else another worker runs the job now, in a staging area of its own
            staged.discard()
        raise
    staged.discard()
    report(1.0, rows_fetched=fetched)
    return fetched


def _query_into(
    out: BinaryIO, sql: Mapping[str, Any], host: str, port: int, password: str | None, report: Report
) -> int:
    from sqlalchemy.exc import DBAPIError

    with _connected(sql, host, port, password) as conn:
        try:
            result = _run_read_only(conn, sql)
            names = _column_names(result)
            return _write_csv(out, names, _cell_writers(sql["engine"], result), result, _Fetched(report))
        except DBAPIError as exc:
            raise _query_error(exc, sql, password) from None


def _probe(objects: ObjectStore, area: str, staging_uri: str) -> None:
    """Write and remove a small file in the attempt's staging area, so that a place that cannot be written (its
    bucket, its permissions) is said before the query runs, not after."""
    probe = ObjectStore.join(area, "probe.csv")
    try:
        with objects.open_write(probe) as out:
            out.write(b"probe\n")
        objects.delete(probe)
    except MlsvcError as exc:
        raise MlsvcError(
            exc.code,
            f"the staging location {staging_uri} cannot be written, so the query was not run: {exc.message}",
            exc.details,
        ) from exc


@contextmanager
def _connected(sql: Mapping[str, Any], host: str, port: int, password: str | None) -> Iterator[Connection]:
    """A connection of its own (no pool: one job, one query), closed with its engine at the end."""
    from sqlalchemy import URL, create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    spec = ENGINES[sql["engine"]]
    url = URL.create(
        spec.driver, username=sql["username"], password=password, host=host, port=port, database=sql["database"]
    )
    engine = create_engine(url, poolclass=NullPool, connect_args=dict(spec.connect_args))
    try:
        try:
            conn = engine.connect()
        except DBAPIError as exc:
            raise _connect_error(exc, sql, host, port, password) from None
        with conn:
            yield conn
    finally:
        engine.dispose()


def _run_read_only(conn: Connection, sql: Mapping[str, Any]) -> CursorResult[Any]:
    """The query's result, streamed from a server-side cursor, in a transaction that cannot write."""
    if sql["engine"] == "mysql":
        # For the session too, so that no statement of the query's can start a transaction that writes.
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        conn.exec_driver_sql("START TRANSACTION READ ONLY")
    else:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")  # the first statement of the transaction psycopg began
    # no_parameters: the query goes to the driver as it is, so a '%' or ':name' in it is SQL, not a placeholder.
    options = {"stream_results": True, "no_parameters": True}
    return conn.exec_driver_sql(sql["query"], execution_options=options)


def _column_names(result: CursorResult[Any]) -> list[str]:
    if not result.returns_rows:
        raise MlsvcError(
            ErrorCode.INVALID_DATA, "the statement returned no rows to read; the query must be a SELECT that reads"
        )
    names = [str(name) for name in result.keys()]  # noqa: SIM118 (a result's keys, not a dict's)
    blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if blank or dupes:
        what = f"the column name(s) {dupes} more than once" if dupes else f"no name for column(s) {blank}"
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the query returns {what} (its columns are {names}); a datasource needs each column named once: "
            "give them names of their own with AS",
            {"columns": names, "duplicate_columns": dupes},
        )
    return names


def _cell_writers(engine: str, result: CursorResult[Any]) -> list[Callable[[Any], str]]:
    """How each column's values become text: ``cell``, except MySQL's BIT columns, whose bytes hold a number."""
    description = result.cursor.description or []
    return [_bit_cell if engine == "mysql" and column[1] == _MYSQL_BIT else cell for column in description]


class _Fetched:
    """Counts the rows staged, and reports them on the resource about once a second."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.rows = 0
        self._last = float("-inf")

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY_S:
            self._last = now
            self.report(self.rows / (self.rows + HALF_AT_ROWS), rows_fetched=self.rows)


def _write_csv(
    out: BinaryIO, names: list[str], cells: list[Callable[[Any], str]], result: CursorResult[Any], fetched: _Fetched
) -> int:
    """The header and every row, a batch at a time (each encoded and written before the next is fetched)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    for batch in result.partitions(BATCH_ROWS):
        writer.writerows([[write(value) for write, value in zip(cells, row, strict=True)] for row in batch])
        out.write(text.getvalue().encode("utf-8"))
        text.seek(0)
        text.truncate()
        fetched.add(len(batch))
    if fetched.rows == 0:  # raised inside the write, so that nothing is published
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the query returned no rows (its columns are {names}); a datasource needs at least one row of data",
            {"columns": names},
        )
    return fetched.rows


# --- values as text that reads back ---


def cell(value: Any) -> str:
    """One value as a CSV cell: NULL empty; numbers, dates and times as they read back (decimals in full, never in
    exponent form); bytes as UTF-8 text when they are text, else as \\x and hex digits (PostgreSQL's bytea form)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date | clock_time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)  # UUIDs, network addresses, ranges: their own text forms


def _bit_cell(value: Any) -> str:
    return "" if value is None else str(int.from_bytes(bytes(value), "big"))


def _duration(value: timedelta) -> str:
    """[-]HH:MM:SS[.ffffff], as MySQL writes a TIME (hours may exceed 24)."""
    micros = value // timedelta(microseconds=1)
    seconds, fraction = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = f"{'-' if micros < 0 else ''}{hours:02d}:{minute:02d}:{second:02d}"
    return text + (f".{fraction:06d}" if fraction else "")


def _bytes_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "\\x" + data.hex()
    return text if text.isprintable() or not data else "\\x" + data.hex()


# --- the drivers' errors as messages a person can act on ---


def _connect_error(exc: DBAPIError, sql: Mapping[str, Any], host: str, port: int, password: str | None) -> MlsvcError:
    spec = ENGINES[sql["engine"]]
    message = _driver_message(exc, password)
    lowered = message.lower()
    if any(word in lowered for word in ("access denied", "authentication", "password", "role ")):
        code, hint = ErrorCode.ACCESS_DENIED, "check the username and password"
    elif "unknown database" in lowered or ("database" in lowered and "does not exist" in lowered):
        code, hint = ErrorCode.DATA_NOT_FOUND, "check the database name"
    else:
        code, hint = ErrorCode.INVALID_REQUEST, "check the host and port, and that the server runs and is reachable"
    return MlsvcError(
        code,
        f"cannot connect to {spec.label} at {host}:{port} as '{sql['username']}' (database '{sql['database']}'): "
        f"{message}; {hint}",
        {"engine": sql["engine"], "host": host, "port": port, "database": sql["database"]},
    )


def _query_error(exc: DBAPIError, sql: Mapping[str, Any], password: str | None) -> MlsvcError:
    spec = ENGINES[sql["engine"]]
    message = _driver_message(exc, password)
    details = {"engine": sql["engine"], "database": sql["database"]}
    if _refused_write(exc, sql["query"]):
        return MlsvcError(
            ErrorCode.INVALID_DATA,
            f"the query must only read (a SELECT): mlsvc runs it in a read-only transaction, and {spec.label} "
            f"refused it: {message}",
            details,
        )
    return MlsvcError(ErrorCode.INVALID_DATA, f"{spec.label} refused the query: {message}", details)


def _refused_write(exc: DBAPIError, query: str) -> bool:
    """Whether the database refused the query for writing, or because it is not a query at all."""
    orig = exc.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    state = getattr(orig, "sqlstate", None)
    if (args and args[0] == 1792) or state == "25006":  # MySQL's and PostgreSQL's "in a read-only transaction"
        return True
    first = _LEADING_NOISE.sub("", query, count=1).split(None, 1)
    return state in ("42601", "0A000", None) and bool(first) and first[0].lower() in _NOT_QUERIES


def _driver_message(exc: DBAPIError, password: str | None) -> str:
    """The driver's own words, on one line, without the password (should a driver ever echo it)."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if primary:  # psycopg: the message without the context lines (which show the cursor mlsvc declared)
        hint = getattr(diag, "message_hint", None)
        text = primary + (f" (hint: {hint})" if hint else "")
    elif len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (error number, message)
        text = f"{args[1]} (error {args[0]})"
    else:
        text = str(orig)
    text = " ".join(text.split())
    if password:
        text = text.replace(password, "***")
    return text[:MESSAGE_LIMIT]
