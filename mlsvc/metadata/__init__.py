"""The metadata plane: resources, tags, aliases and the job queue, behind two interfaces (SQLite / PostgreSQL)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ResourceKind = Literal["datasource", "model", "evaluation", "batch_prediction"]
# A resource as stored: its API fields plus the internal ones (model_uri, files, …), by field name.
Document = dict[str, Any]
TagFilter = tuple[str, str | None]

# Which resource each job kind reports to.
RESOURCE_OF_JOB: dict[str, ResourceKind] = {
    "datasource.create": "datasource",
    "model.train": "model",
    "recommender.train": "model",
    "evaluation.run": "evaluation",
    "batch_prediction.run": "batch_prediction",
}


class MetadataStore(Protocol):
    """Resources with their tags, model versions and aliases. Every method raises the catalogue's errors
    (``MlsvcError``), never a database driver's."""

    def create(
        self,
        kind: ResourceKind,
        record: Mapping[str, Any],
        request_hash: str,
        resource_tags: Mapping[str, str],
        job_kind: str | None,
        max_attempts: int = 3,
    ) -> tuple[Document, bool]:
        """Insert a resource and its job in one transaction; (the resource, whether it was created)."""
        ...

    def same_request(self, kind: ResourceKind, resource_id: str, request_hash: str) -> Document | None: ...

    def get(self, kind: ResourceKind, resource_id: str) -> Document: ...

    def find(self, kind: ResourceKind, resource_id: str) -> Document | None: ...

    def update(self, kind: ResourceKind, resource_id: str, fields: Mapping[str, Any]) -> None: ...

    def set_tags(self, kind: ResourceKind, resource_id: str, changes: Mapping[str, str | None]) -> None: ...

    def list(
        self,
        kind: ResourceKind,
        *,
        status: str | None = None,
        name_prefix: str | None = None,
        tag: TagFilter | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[builtins.list[Document], str | None]: ...

    def model_by_version(self, name: str, version: int) -> Document | None: ...

    def latest_completed_model(self, name: str) -> Document | None: ...

    def model_name_exists(self, name: str) -> bool: ...

    def model_names(self) -> builtins.list[str]: ...

    def aliases(self, name: str) -> dict[str, int]: ...

    def model_versions(self, name: str) -> builtins.list[Document]:
        """Every version of ``name`` in brief (id, version, status, promoted_at, promotion), newest first."""
        ...

    def alias_version(self, name: str, alias: str) -> int | None: ...

    def alias_targets(self, alias: str) -> builtins.list[tuple[str, int]]:
        """(name, version) of every model that has ``alias``."""
        ...

    def set_alias(self, name: str, alias: str, version: int, *, require_status: str | None = None) -> bool: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def delete(self, kind: ResourceKind, resource_id: str) -> None:
        """Mark a resource DELETED, and cancel its job if no worker has claimed it yet, in one transaction."""
        ...

    def delete_model(self, model_id: str) -> builtins.list[str]: ...

    def queue_place(self, resource_id: str) -> tuple[int, int] | None:
        """For a resource whose job waits: (jobs ahead of it, jobs running now); None when it is not queued."""
        ...

    def job_counts(self) -> dict[str, int]: ...

    def batch_rows_scored(self) -> int: ...

    def record_integrity_failure(self, model_uri: str, label: str, problems: builtins.list[str]) -> None: ...

    def integrity_failures(self) -> tuple[int, Document | None]: ...

    def dispose(self) -> None: ...


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: the lease is valid while ``attempt`` and ``owner`` still match the row."""

    job_id: int
    kind: str
    resource_id: str
    attempt: int
    owner: str

    @property
    def resource_kind(self) -> ResourceKind:
        return RESOURCE_OF_JOB[self.kind]


class LeaseLost(Exception):
    """The lease ran out and another worker may hold the job: this worker must stop writing."""


class JobCancelled(LeaseLost):
    """The job's resource was deleted while the job ran: it must stop, publish nothing and free its worker."""


class InputNotReady(Exception):
    """A resource the job reads is still PENDING or INPROGRESS: the job goes back to the queue for a while,
    without using up an attempt (Amazon ML queued a model behind its datasource, an evaluation behind its
    model)."""

    def __init__(self, message: str, wait_s: float = 2.0) -> None:
        super().__init__(message)
        self.message = message
        self.wait_s = wait_s


# Called by ``JobQueue.claim`` with (job kind, resource id) for each job it ends without running: given up after
# its last attempt, or cancelled because its resource was deleted (so that what it staged can be removed).
EndedJob = Callable[[str, str], None]


class JobQueue(Protocol):
    """Durable jobs: claimed with a lease, kept by heartbeats, finished in the resource's transaction."""

    def claim(self, owner: str, ended: EndedJob | None = None) -> Claim | None: ...

    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; False when it was lost; raises JobCancelled once the resource is deleted."""
        ...

    def cancelled(self, claim: Claim) -> bool:
        """Whether the job's resource was deleted (a read, cheap enough to ask every second)."""
        ...

    def cancel(self, claim: Claim, message: str) -> None:
        """End a job whose resource was deleted: CANCELLED, never retried; raises LeaseLost if not held."""
        ...

    def report(self, claim: Claim, fields: Mapping[str, Any]) -> None: ...

    def complete(
        self, claim: Claim, fields: Mapping[str, Any], aliases: Sequence[tuple[str, str, int]] = ()
    ) -> None: ...

    def fail(self, claim: Claim, message: str) -> None: ...

    def defer(self, claim: Claim, wait_s: float, message: str) -> None: ...

    def release(self, claim: Claim) -> None: ...

    def job_of(self, resource_id: str) -> Mapping[Any, Any] | None: ...
