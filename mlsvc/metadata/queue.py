"""The job queue on the SQL metadata store: claims with a lease, heartbeats, completion and failure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, and_, or_, select, update

from mlsvc.metadata import RESOURCE_OF_JOB, Claim, EndedJob, JobCancelled, JobQueue, LeaseLost
from mlsvc.metadata.sql import SqlMetadataStore, utcnow
from mlsvc.metadata.tables import RESOURCE_TABLES, jobs


class SqlJobQueue(JobQueue):
    """Operations on the ``jobs`` table. Every write that finishes a job checks the lease in the same transaction."""

    def __init__(self, store: SqlMetadataStore, lease_s: float) -> None:
        self.store = store
        self.lease = timedelta(seconds=lease_s)

    def claim(self, owner: str, ended: EndedJob | None = None) -> Claim | None:
        """Take the oldest runnable job: queued, or running with an expired lease (its worker died). Jobs met on
        the way that end here (given up after their last attempt, or whose resource was deleted) are told to
        ``ended`` once their end is committed."""
        for _ in range(5):
            finished: Mapping[str, Any] | None = None
            with self.store.transaction() as conn:
                row = self._candidate(conn)
                if row is None:
                    return None
                if row["state"] == "RUNNING" and row["attempts"] >= row["max_attempts"]:
                    self._give_up(conn, row)
                    finished = row
                else:
                    claim = self._take(conn, row, owner)
                    if isinstance(claim, Claim):
                        return claim
                    if claim == "cancelled":
                        finished = row
            if finished is not None and ended is not None:
                ended(finished["kind"], finished["resource_id"])
        return None

    def _candidate(self, conn: Connection) -> Mapping[Any, Any] | None:
        now = utcnow()
        query = (
            select(jobs)
            .where(
                or_(
                    # A queued job's lease_until, when set, is when a deferred job may run again (``defer``).
                    and_(jobs.c.state == "QUEUED", or_(jobs.c.lease_until.is_(None), jobs.c.lease_until <= now)),
                    and_(jobs.c.state == "RUNNING", jobs.c.lease_until < now),
                )
            )
            .order_by(jobs.c.id)
            .limit(1)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return conn.execute(query).mappings().first()

    def _take(self, conn: Connection, row: Mapping[str, Any], owner: str) -> Claim | Literal["lost", "cancelled"]:
        now = utcnow()
        # Compare-and-set on the attempt count: on SQLite (no row locks) two workers may see the same
        # candidate, and only the one whose update matches the attempt it read wins.
        result = conn.execute(
            update(jobs)
            .where(and_(jobs.c.id == row["id"], jobs.c.attempts == row["attempts"], jobs.c.state == row["state"]))
            .values(
                state="RUNNING", owner=owner, attempts=row["attempts"] + 1, lease_until=now + self.lease, updated_at=now
            )
        )
        if result.rowcount != 1:
            return "lost"
        claim = Claim(row["id"], row["kind"], row["resource_id"], row["attempts"] + 1, owner)
        if self._resource_status(conn, claim) == "DELETED":
            # Deleted before its job ran (or while a worker that has died ran it): nothing to do, and the
            # resource must stay deleted.
            conn.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id)
                .values(
                    state="CANCELLED",
                    owner=None,
                    lease_until=None,
                    error="the resource was deleted; its job, whose worker had stopped, is not run again"
                    if row["state"] == "RUNNING"
                    else "the resource was deleted before its job ran",
                    updated_at=now,
                )
            )
            return "cancelled"
        started = {"status": "INPROGRESS", "progress": 0.0, "message": "", "started_at": now, "finished_at": None}
        self.store.update(claim.resource_kind, claim.resource_id, started, conn)
        return claim

    def _resource_status(self, conn: Connection, claim: Claim) -> str | None:
        table = RESOURCE_TABLES[claim.resource_kind]
        return conn.execute(select(table.c.status).where(table.c.id == claim.resource_id)).scalar_one_or_none()

    def _give_up(self, conn: Connection, row: Mapping[str, Any]) -> None:
        message = (
            f"the worker running this job stopped responding {row['attempts']} times "
            "(killed, out of memory or lost); giving up"
        )
        conn.execute(
            update(jobs)
            .where(jobs.c.id == row["id"])
            .values(state="FAILED", error=message, owner=None, updated_at=utcnow())
        )
        kind = RESOURCE_OF_JOB[row["kind"]]
        table = RESOURCE_TABLES[kind]
        status = conn.execute(select(table.c.status).where(table.c.id == row["resource_id"])).scalar_one_or_none()
        if status != "DELETED":
            self.store.update(
                kind, row["resource_id"], {"status": "FAILED", "message": message, "finished_at": utcnow()}, conn
            )

    def _owned(self, claim: Claim) -> Any:
        return and_(
            jobs.c.id == claim.job_id,
            jobs.c.owner == claim.owner,
            jobs.c.attempts == claim.attempt,
            jobs.c.state == "RUNNING",
        )

    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; False when it was lost (another worker took the job). Raises JobCancelled once the
        resource is deleted: the worker must stop the job and ``cancel`` it."""
        now = utcnow()
        with self.store.transaction() as conn:
            result = conn.execute(
                update(jobs).where(self._owned(claim)).values(lease_until=now + self.lease, updated_at=now)
            )
            deleted = self._resource_status(conn, claim) == "DELETED"
        if deleted:  # the lease is still extended: the worker keeps the job while it stops it
            raise self._cancelled_error(claim)
        return result.rowcount == 1

    def cancelled(self, claim: Claim) -> bool:
        with self.store.transaction() as conn:
            return self._resource_status(conn, claim) == "DELETED"

    def cancel(self, claim: Claim, message: str) -> None:
        with self.store.transaction() as conn:
            result = conn.execute(
                update(jobs)
                .where(self._owned(claim))
                .values(state="CANCELLED", error=message, lease_until=None, updated_at=utcnow())
            )
            if result.rowcount != 1:
                raise LeaseLost(f"job {claim.job_id} is no longer held by {claim.owner}")
            self.store.update(claim.resource_kind, claim.resource_id, {"finished_at": utcnow()}, conn)

    def _cancelled_error(self, claim: Claim) -> JobCancelled:
        return JobCancelled(f"{claim.resource_kind.replace('_', ' ')} '{claim.resource_id}' was deleted")

    def report(self, claim: Claim, fields: Mapping[str, Any]) -> None:
        """Write progress or partial results to the resource, if this worker still holds the job; raises
        JobCancelled once the resource is deleted."""
        with self.store.transaction() as conn:
            if not self._still_owned(conn, claim):
                raise LeaseLost(f"job {claim.job_id} is no longer held by {claim.owner}")
            if self._resource_status(conn, claim) == "DELETED":
                raise self._cancelled_error(claim)
            self.store.update(claim.resource_kind, claim.resource_id, fields, conn)

    def complete(self, claim: Claim, fields: Mapping[str, Any], aliases: Sequence[tuple[str, str, int]] = ()) -> None:
        """Record the job's result, and point ``aliases`` (name, alias, version) at it in the same transaction,
        so an alias never names a version that is not COMPLETED."""
        self._finish(claim, "DONE", None, {"message": "", **fields, "status": "COMPLETED", "progress": 1.0}, aliases)

    def fail(self, claim: Claim, message: str) -> None:
        self._finish(claim, "FAILED", message, {"status": "FAILED", "message": message})

    def _finish(
        self,
        claim: Claim,
        state: str,
        error: str | None,
        fields: Mapping[str, Any],
        aliases: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        with self.store.transaction() as conn:
            result = conn.execute(
                update(jobs)
                .where(self._owned(claim))
                .values(state=state, error=error, lease_until=None, updated_at=utcnow())
            )
            if result.rowcount != 1:
                raise LeaseLost(f"job {claim.job_id} is no longer held by {claim.owner}")
            if self._resource_status(conn, claim) == "DELETED":
                # Deleted while its job ran: keep what the job made, but never bring the resource back.
                fields = {k: v for k, v in fields.items() if k not in ("status", "message")}
                aliases = ()
            self.store.update(claim.resource_kind, claim.resource_id, {**fields, "finished_at": utcnow()}, conn)
            for name, alias, version in aliases:
                self.store.set_alias(name, alias, version, conn)

    def _still_owned(self, conn: Connection, claim: Claim) -> bool:
        return conn.execute(select(jobs.c.id).where(self._owned(claim))).first() is not None

    def job_of(self, resource_id: str) -> Mapping[Any, Any] | None:
        """The newest job of a resource (for operators and tests)."""
        with self.store.transaction() as conn:
            return (
                conn.execute(select(jobs).where(jobs.c.resource_id == resource_id).order_by(jobs.c.id.desc()).limit(1))
                .mappings()
                .first()
            )

    def defer(self, claim: Claim, wait_s: float, message: str) -> None:
        """Hand a job back to run again in ``wait_s`` seconds, without using up an attempt: what it reads is not
        ready yet. Its resource is PENDING again, its message says what it waits for."""
        now = utcnow()
        with self.store.transaction() as conn:
            result = conn.execute(
                update(jobs)
                .where(self._owned(claim))
                .values(
                    state="QUEUED",
                    owner=None,
                    lease_until=now + timedelta(seconds=wait_s),
                    attempts=claim.attempt - 1,
                    updated_at=now,
                )
            )
            if result.rowcount == 1 and self._resource_status(conn, claim) != "DELETED":
                waiting = {"status": "PENDING", "progress": 0.0, "message": message, "started_at": None}
                self.store.update(claim.resource_kind, claim.resource_id, waiting, conn)

    def release(self, claim: Claim) -> None:
        """Hand a job back untouched (the worker is shutting down), without using up an attempt."""
        with self.store.transaction() as conn:
            deleted = self._resource_status(conn, claim) == "DELETED"
            result = conn.execute(
                update(jobs)
                .where(self._owned(claim))
                .values(
                    state="CANCELLED" if deleted else "QUEUED",
                    owner=None,
                    lease_until=None,
                    attempts=claim.attempt - 1,
                    updated_at=utcnow(),
                )
            )
            if result.rowcount == 1 and not deleted:
                self.store.update(
                    claim.resource_kind, claim.resource_id, {"status": "PENDING", "progress": 0.0, "message": ""}, conn
                )
