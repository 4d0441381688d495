"""The SQLAlchemy metadata store: resources, tags and model aliases on SQLite or PostgreSQL."""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.exc import DataError, IntegrityError

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import RESOURCE_OF_JOB, MetadataStore
from mlsvc.metadata.migrate import migrate
from mlsvc.metadata.tables import RESOURCE_TABLES, jobs, model_aliases, tags

# Columns that live in their own SQL column; every other resource field is kept in ``doc``.
_COMMON = ("id", "name", "status", "message", "progress", "created_at", "updated_at")
_EXTRA_COLUMNS = {
    "datasource": ("data_uri",),
    "model": ("version", "datasource_id"),
    "evaluation": ("model_id", "datasource_id"),
    "batch_prediction": ("model_id", "rows_scored"),
}
MAX_PAGE = 1000
VERSION_RACE_RETRIES = 5
PRODUCTION = "production"


class _VersionTaken(Exception):
    """A concurrent create of a model of the same name took the version this one was about to take."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def make_engine(url: str) -> Engine:
    """An engine tuned for its backend: WAL and a busy timeout on SQLite, since worker processes write too."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def encode_token(created_at: datetime, resource_id: str) -> str:
    raw = json.dumps([_aware(created_at).isoformat(), resource_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime, str]:
    try:
        if len(token) > 512:
            raise ValueError("too long")
        padded = token + "=" * (-len(token) % 4)
        created, rid = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), str(rid)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, "next_token is not one this service issued") from exc


class SqlMetadataStore(MetadataStore):
    """Resources, tags, aliases and (through ``SqlJobQueue``) jobs, in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except DataError as exc:
            # The database refused a value the request carried (PostgreSQL takes no NUL character in text).
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST,
                "a value in the request cannot be stored or looked up: it holds a NUL character or is too long",
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # --- resources ---

    def create(
        self,
        kind: str,
        record: Mapping[str, Any],
        request_hash: str,
        resource_tags: Mapping[str, str],
        job_kind: str | None,
        max_attempts: int = 3,
    ) -> tuple[dict[str, Any], bool]:
        """Insert a resource (and its job, in the same transaction); an existing id with the same request is
        returned as it is, with a different request it is a conflict."""
        for _ in range(VERSION_RACE_RETRIES):
            try:
                return self._create(kind, record, request_hash, resource_tags, job_kind, max_attempts)
            except _VersionTaken:
                continue  # another create of the same name took the version between our read and our insert
        raise MlsvcError(
            ErrorCode.CONFLICT, f"too many models of '{record['name']}' are being created at once; try again"
        )

    def _create(
        self,
        kind: str,
        record: Mapping[str, Any],
        request_hash: str,
        resource_tags: Mapping[str, str],
        job_kind: str | None,
        max_attempts: int,
    ) -> tuple[dict[str, Any], bool]:
        table = RESOURCE_TABLES[kind]
        try:
            with self.transaction() as conn:
                existing = self._get_row(conn, kind, record["id"])
                if existing is not None:
                    return self._existing(kind, existing, request_hash), False
                if kind == "model" and record.get("version") is None:
                    # The version is the name's next one from the start, so 'name:N' finds it while it trains.
                    record = {**record, "version": self._next_version(conn, record["name"])}
                conn.execute(insert(table).values(**self._to_row(kind, record), request_hash=request_hash))
                self._write_tags(conn, kind, record["id"], resource_tags)
                if job_kind:
                    now = utcnow()
                    conn.execute(
                        insert(jobs).values(
                            kind=job_kind,
                            resource_id=record["id"],
                            state="QUEUED",
                            attempts=0,
                            max_attempts=max_attempts,
                            created_at=now,
                            updated_at=now,
                        )
                    )
        except IntegrityError:
            # Another request created the same id (or, for a model, took the same version) meanwhile.
            with self.transaction() as conn:
                existing = self._get_row(conn, kind, record["id"])
            if existing is None:
                if kind == "model":
                    raise _VersionTaken() from None
                raise
            return self._existing(kind, existing, request_hash), False
        return self.get(kind, record["id"]), True

    def _next_version(self, conn: Connection, name: str) -> int:
        table = RESOURCE_TABLES["model"]
        highest = conn.execute(select(func.max(table.c.version)).where(table.c.name == name)).scalar_one()
        return int(highest or 0) + 1

    def same_request(self, kind: str, resource_id: str, request_hash: str) -> dict[str, Any] | None:
        """The resource a create with this id already made, if the request is the same (a safe retry); None when
        there is none; a conflict when the id was used with other parameters."""
        with self.transaction() as conn:
            row = self._get_row(conn, kind, resource_id)
        return None if row is None else self._existing(kind, row, request_hash)

    def _existing(self, kind: str, row: Mapping[str, Any], request_hash: str) -> dict[str, Any]:
        if row["request_hash"] != request_hash:
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"{kind} '{row['id']}' already exists with different parameters; choose another id",
                {"id": row["id"]},
            )
        return self.get(kind, row["id"])

    def get(self, kind: str, resource_id: str) -> dict[str, Any]:
        with self.transaction() as conn:
            row = self._get_row(conn, kind, resource_id)
            if row is None:
                raise MlsvcError(
                    ErrorCode.NOT_FOUND, f"{kind.replace('_', ' ')} '{resource_id}' not found", {"id": resource_id}
                )
            return self._from_row(conn, kind, row)

    def find(self, kind: str, resource_id: str) -> dict[str, Any] | None:
        with self.transaction() as conn:
            row = self._get_row(conn, kind, resource_id)
            return None if row is None else self._from_row(conn, kind, row)

    def update(self, kind: str, resource_id: str, fields: Mapping[str, Any], conn: Connection | None = None) -> None:
        """Set fields of a resource; fields outside the SQL columns are merged into ``doc``."""
        if conn is None:
            with self.transaction() as c:
                self.update(kind, resource_id, fields, c)
            return
        table = RESOURCE_TABLES[kind]
        columns = set(_COMMON) | set(_EXTRA_COLUMNS[kind])
        values = {k: v for k, v in fields.items() if k in columns}
        doc_fields = {k: v for k, v in fields.items() if k not in columns}
        if doc_fields:
            doc = conn.execute(select(table.c.doc).where(table.c.id == resource_id)).scalar_one()
            values["doc"] = {**doc, **_jsonable(doc_fields)}
        values["updated_at"] = utcnow()
        conn.execute(update(table).where(table.c.id == resource_id).values(**values))

    def set_tags(self, kind: str, resource_id: str, changes: Mapping[str, str | None]) -> None:
        """Merge tag changes: a value sets the key, None removes it."""
        with self.transaction() as conn:
            for key, value in changes.items():
                conn.execute(
                    delete(tags).where(and_(tags.c.kind == kind, tags.c.resource_id == resource_id, tags.c.key == key))
                )
                if value is not None:
                    conn.execute(insert(tags).values(kind=kind, resource_id=resource_id, key=key, value=value))
            table = RESOURCE_TABLES[kind]
            conn.execute(update(table).where(table.c.id == resource_id).values(updated_at=utcnow()))

    def list(
        self,
        kind: str,
        *,
        status: str | None = None,
        name_prefix: str | None = None,
        tag: tuple[str, str | None] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """A page of resources, newest first; DELETED ones only when asked for by status."""
        table = RESOURCE_TABLES[kind]
        query = select(table)
        if status:
            query = query.where(table.c.status == status)
        else:
            query = query.where(table.c.status != "DELETED")
        if name_prefix:
            escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(table.c.name.like(escaped + "%", escape="\\"))
        for column, value in (where or {}).items():
            query = query.where(table.c[column] == value)
        if tag:
            key, value = tag
            cond = and_(tags.c.kind == kind, tags.c.resource_id == table.c.id, tags.c.key == key)
            if value is not None:
                cond = and_(cond, tags.c.value == value)
            query = query.where(select(tags.c.key).where(cond).exists())
        if next_token:
            created, rid = decode_token(next_token)
            query = query.where(
                or_(table.c.created_at < created, and_(table.c.created_at == created, table.c.id < rid))
            )
        limit = max(1, min(limit, MAX_PAGE))
        # One row more than asked tells whether another page exists without a second query.
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
        with self.transaction() as conn:
            rows = conn.execute(query).mappings().all()
            items = [self._from_row(conn, kind, r) for r in rows[:limit]]
        token = encode_token(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
        return items, token

    # --- models: versions and aliases ---

    def model_by_version(self, name: str, version: int) -> dict[str, Any] | None:
        table = RESOURCE_TABLES["model"]
        with self.transaction() as conn:
            row = (
                conn.execute(select(table).where(and_(table.c.name == name, table.c.version == version)))
                .mappings()
                .first()
            )
            return None if row is None else self._from_row(conn, "model", row)

    def latest_completed_model(self, name: str) -> dict[str, Any] | None:
        table = RESOURCE_TABLES["model"]
        query = (
            select(table)
            .where(and_(table.c.name == name, table.c.status == "COMPLETED"))
            .order_by(table.c.version.desc())
            .limit(1)
        )
        with self.transaction() as conn:
            row = conn.execute(query).mappings().first()
            return None if row is None else self._from_row(conn, "model", row)

    def model_name_exists(self, name: str) -> bool:
        table = RESOURCE_TABLES["model"]
        with self.transaction() as conn:
            return conn.execute(select(func.count()).where(table.c.name == name)).scalar_one() > 0

    def alias_version(self, name: str, alias: str) -> int | None:
        with self.transaction() as conn:
            return conn.execute(
                select(model_aliases.c.version).where(
                    and_(model_aliases.c.name == name, model_aliases.c.alias == alias)
                )
            ).scalar_one_or_none()

    def alias_targets(self, alias: str) -> builtins.list[tuple[str, int]]:
        query = select(model_aliases.c.name, model_aliases.c.version).where(model_aliases.c.alias == alias)
        with self.transaction() as conn:
            return [(str(name), int(version)) for name, version in conn.execute(query.order_by(model_aliases.c.name))]

    def set_alias(
        self, name: str, alias: str, version: int, conn: Connection | None = None, require_status: str | None = None
    ) -> bool:
        """Point ``alias`` at ``version``; with ``require_status``, only if that version has it, checked in the
        same transaction (so a version deleted meanwhile never gets an alias). False when it was refused."""
        if conn is None:
            with self.transaction() as c:
                return self.set_alias(name, alias, version, c, require_status)
        if require_status is not None:
            table = RESOURCE_TABLES["model"]
            status = conn.execute(
                select(table.c.status).where(and_(table.c.name == name, table.c.version == version))
            ).scalar_one_or_none()
            if status != require_status:
                return False
        conn.execute(delete(model_aliases).where(and_(model_aliases.c.name == name, model_aliases.c.alias == alias)))
        now = utcnow()
        conn.execute(insert(model_aliases).values(name=name, alias=alias, version=version, updated_at=now))
        if alias == PRODUCTION:
            self._note_promotion(conn, name, version, now)
        return True

    def _note_promotion(self, conn: Connection, name: str, version: int, at: datetime) -> None:
        """Remember when a version last became production: a bare name falls back to it if the alias goes."""
        table = RESOURCE_TABLES["model"]
        row = conn.execute(
            select(table.c.id, table.c.doc).where(and_(table.c.name == name, table.c.version == version))
        ).first()
        if row is not None:
            doc = {**row.doc, "promoted_at": at.isoformat()}
            conn.execute(update(table).where(table.c.id == row.id).values(doc=doc))

    def model_names(self) -> builtins.list[str]:
        """Every model name with a version that is not DELETED, in order."""
        table = RESOURCE_TABLES["model"]
        query = select(table.c.name).where(table.c.status != "DELETED").distinct().order_by(table.c.name)
        with self.transaction() as conn:
            return [str(name) for name in conn.execute(query).scalars()]

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` and the version each points at."""
        query = select(model_aliases.c.alias, model_aliases.c.version).where(model_aliases.c.name == name)
        with self.transaction() as conn:
            return {str(alias): int(version) for alias, version in conn.execute(query.order_by(model_aliases.c.alias))}

    def model_versions(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every version of ``name`` in brief (id, version, status, promoted_at, promotion), newest first."""
        table = RESOURCE_TABLES["model"]
        query = (
            select(table.c.id, table.c.version, table.c.status, table.c.doc)
            .where(table.c.name == name)
            .order_by(table.c.version.desc())
        )
        with self.transaction() as conn:
            return [
                {
                    "id": row.id,
                    "version": row.version,
                    "status": row.status,
                    "promoted_at": row.doc.get("promoted_at"),
                    "promotion": row.doc.get("promotion"),
                }
                for row in conn.execute(query)
            ]

    def delete_alias(self, name: str, alias: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                delete(model_aliases).where(and_(model_aliases.c.name == name, model_aliases.c.alias == alias))
            )

    def delete(self, kind: str, resource_id: str) -> None:
        """Mark a resource DELETED and cancel its job if it is still queued, in one transaction (a running job
        learns of the delete from its heartbeat and stops)."""
        with self.transaction() as conn:
            self._cancel_queued(conn, kind, resource_id)
            self.update(kind, resource_id, {"status": "DELETED"}, conn)

    def _cancel_queued(self, conn: Connection, kind: str, resource_id: str) -> None:
        # The job row first: a worker claiming it at the same moment holds its lock (PostgreSQL), so the two
        # transactions meet in the same order and the claim sees the delete or the delete sees the claim.
        kinds = [job_kind for job_kind, of in RESOURCE_OF_JOB.items() if of == kind]
        conn.execute(
            update(jobs)
            .where(and_(jobs.c.resource_id == resource_id, jobs.c.kind.in_(kinds), jobs.c.state == "QUEUED"))
            .values(state="CANCELLED", error="the resource was deleted before its job ran", updated_at=utcnow())
        )

    def delete_model(self, model_id: str) -> builtins.list[str]:
        """Mark a model DELETED and drop the aliases on its version, in one transaction; the aliases dropped."""
        table = RESOURCE_TABLES["model"]
        with self.transaction() as conn:
            row = conn.execute(select(table.c.name, table.c.version).where(table.c.id == model_id)).first()
            if row is None:
                raise MlsvcError(ErrorCode.NOT_FOUND, f"model '{model_id}' not found", {"id": model_id})
            dropped = self.aliases_of(conn, row.name, row.version)
            self._cancel_queued(conn, "model", model_id)
            if dropped:
                conn.execute(
                    delete(model_aliases).where(
                        and_(model_aliases.c.name == row.name, model_aliases.c.version == row.version)
                    )
                )
            self.update("model", model_id, {"status": "DELETED"}, conn)
            return dropped

    def aliases_of(self, conn: Connection, name: str, version: int | None) -> builtins.list[str]:
        if version is None:
            return []
        rows = conn.execute(
            select(model_aliases.c.alias)
            .where(and_(model_aliases.c.name == name, model_aliases.c.version == version))
            .order_by(model_aliases.c.alias)
        )
        return list(rows.scalars())

    def queue_place(self, resource_id: str) -> tuple[int, int] | None:
        """For a resource whose job waits: (jobs ahead of it, jobs running now); None when its job is not queued."""
        from mlsvc.metadata.tables import jobs

        with self.transaction() as conn:
            job = conn.execute(
                select(jobs.c.id).where(and_(jobs.c.resource_id == resource_id, jobs.c.state == "QUEUED"))
            ).scalar_one_or_none()
            if job is None:
                return None
            ahead = conn.execute(
                select(func.count()).where(and_(jobs.c.state == "QUEUED", jobs.c.id < job))
            ).scalar_one()
            running = conn.execute(
                select(func.count()).where(and_(jobs.c.state == "RUNNING", jobs.c.lease_until >= utcnow()))
            ).scalar_one()
            return int(ahead), int(running)

    # --- figures for /metrics ---

    def job_counts(self) -> dict[str, int]:
        from mlsvc.metadata.tables import jobs

        with self.transaction() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
            return {state: int(count) for state, count in rows}

    def batch_rows_scored(self) -> int:
        from mlsvc.metadata.tables import batch_predictions

        with self.transaction() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(batch_predictions.c.rows_scored), 0))).scalar_one())

    def record_integrity_failure(self, model_uri: str, label: str, problems: builtins.list[str]) -> None:
        """Keep a refused load (by any process) for /metrics and the readiness check."""
        from mlsvc.metadata.tables import integrity_failures

        row = {"at": utcnow(), "model_uri": model_uri, "label": label, "problems": problems}
        with self.transaction() as conn:
            conn.execute(insert(integrity_failures).values(**row))

    def integrity_failures(self) -> tuple[int, dict[str, Any] | None]:
        """How many loads were refused, all time, and the latest one."""
        from mlsvc.metadata.tables import integrity_failures as table

        with self.transaction() as conn:
            count = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            last = conn.execute(select(table).order_by(table.c.id.desc()).limit(1)).mappings().first()
        return count, ({**last, "at": _aware(last["at"])} if last is not None else None)

    # --- row conversion ---

    def _get_row(self, conn: Connection, kind: str, resource_id: str) -> Mapping[Any, Any] | None:
        table = RESOURCE_TABLES[kind]
        return conn.execute(select(table).where(table.c.id == resource_id)).mappings().first()

    def _to_row(self, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
        columns = set(_COMMON) | set(_EXTRA_COLUMNS[kind])
        row = {k: v for k, v in record.items() if k in columns}
        row["doc"] = _jsonable({k: v for k, v in record.items() if k not in columns and k != "tags"})
        return row

    def _from_row(self, conn: Connection, kind: str, row: Mapping[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict(row["doc"])
        for column in (*_COMMON, *_EXTRA_COLUMNS[kind]):
            out[column] = row[column]
        out["created_at"] = _aware(out["created_at"])
        out["updated_at"] = _aware(out["updated_at"])
        out["tags"] = self._read_tags(conn, kind, row["id"])
        if kind == "model":
            out["aliases"] = self.aliases_of(conn, row["name"], row["version"])
        return out

    def _read_tags(self, conn: Connection, kind: str, resource_id: str) -> dict[str, str]:
        rows = conn.execute(
            select(tags.c.key, tags.c.value)
            .where(and_(tags.c.kind == kind, tags.c.resource_id == resource_id))
            .order_by(tags.c.key)
        )
        return {k: v for k, v in rows}

    def _write_tags(self, conn: Connection, kind: str, resource_id: str, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            conn.execute(insert(tags).values(kind=kind, resource_id=resource_id, key=key, value=value))


def _jsonable(value: Any) -> Any:
    """What the JSON column can hold: pydantic models and datetimes turned into plain JSON."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
