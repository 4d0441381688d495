"""What every resource's operations share: ids, the identity of a retried create, list queries, tags and soft
deletes, and the readiness of a datasource a job will read."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Document, MetadataStore, ResourceKind, TagFilter
from mlsvc.metadata.sql import utcnow
from mlsvc.resources import Status

PREFIX: dict[ResourceKind, str] = {"datasource": "ds", "model": "ml", "evaluation": "ev", "batch_prediction": "bp"}
R = TypeVar("R", bound=BaseModel)


class RenamePatch(Protocol):
    """A PATCH body that may rename a resource and change its tags."""

    name: str | None
    tags: dict[str, str | None] | None


def new_id(kind: ResourceKind) -> str:
    return f"{PREFIX[kind]}-{secrets.token_hex(6)}"


def request_hash(body: Mapping[str, Any]) -> str:
    """Identifies a create request's parameters, so a retry with the same id can be told from a conflict."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def pending_record(body: Mapping[str, Any], resource_id: str, **fields: Any) -> dict[str, Any]:
    """A new resource as it is stored before its job runs."""
    now: datetime = utcnow()
    return {
        **body,
        "id": resource_id,
        "status": Status.PENDING.value,
        "message": "",
        "progress": 0.0,
        "created_at": now,
        "updated_at": now,
        **fields,
    }


@dataclass(frozen=True)
class ListQuery:
    """A page of a list: filters (status, name prefix, a tag ``key`` or ``key=value``) and the page's place."""

    status: str | None = None
    name_prefix: str | None = None
    tag: str | None = None
    limit: int = 100
    next_token: str | None = None

    def tag_filter(self) -> TagFilter | None:
        if not self.tag:
            return None
        key, sep, value = self.tag.partition("=")
        return key, (value if sep else None)


def list_page(
    store: MetadataStore,
    kind: ResourceKind,
    shape: type[R],
    query: ListQuery,
    where: Mapping[str, Any] | None = None,
) -> tuple[list[R], str | None]:
    rows, token = store.list(
        kind,
        status=query.status,
        name_prefix=query.name_prefix,
        tag=query.tag_filter(),
        where=where,
        limit=query.limit,
        next_token=query.next_token,
    )
    return [shape.model_validate(queue_note(store, r)) for r in rows], token


def queue_note(store: MetadataStore, doc: Document) -> Document:
    """A PENDING resource says where its job waits ("queued: 2 jobs ahead, 2 workers busy"), so a wait behind
    other work is not mistaken for a hang."""
    if doc["status"] != Status.PENDING.value or doc.get("message"):
        return doc
    place = store.queue_place(doc["id"])
    if place is None:
        return doc
    ahead, running = place
    return {**doc, "message": f"queued: {_count(ahead, 'job')} ahead, {_count(running, 'worker')} busy"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def rename_and_tag(
    store: MetadataStore, kind: ResourceKind, resource_id: str, name: str | None, tags: Mapping[str, str | None] | None
) -> Document:
    store.get(kind, resource_id)
    if name is not None:
        store.update(kind, resource_id, {"name": name})
    if tags:
        store.set_tags(kind, resource_id, tags)
    return store.get(kind, resource_id)


def soft_delete(store: MetadataStore, kind: ResourceKind, resource_id: str) -> Document:
    """DELETED stays readable; deleting again changes nothing. A job not yet started is cancelled with it; a
    running one sees the delete within a few seconds and stops (see ``jobs.worker``)."""
    store.get(kind, resource_id)
    store.delete(kind, resource_id)
    return store.get(kind, resource_id)


def ready_datasource(store: MetadataStore, datasource_id: str, what: str = "datasource") -> Document:
    """A COMPLETED datasource by id, or the error that says why it cannot be used yet."""
    ds = store.find("datasource", datasource_id)
    if ds is None:
        raise MlsvcError(ErrorCode.NOT_FOUND, f"{what} '{datasource_id}' not found", {"id": datasource_id})
    status = ds["status"]
    if status == Status.COMPLETED.value:
        return ds
    hint = {
        "PENDING": "wait until it is COMPLETED",
        "INPROGRESS": "wait until it is COMPLETED",
        "FAILED": f"it failed: {ds.get('message', '')}",
        "DELETED": "it was deleted",
    }[status]
    raise MlsvcError(
        ErrorCode.NOT_READY, f"datasource '{ds['id']}' is {status}; {hint}", {"id": ds["id"], "status": status}
    )


WAITABLE = (Status.PENDING.value, Status.INPROGRESS.value)


def usable_datasource(store: MetadataStore, datasource_id: str, wait: bool, what: str = "datasource") -> Document:
    """``ready_datasource``; with ``wait``, also one still PENDING or INPROGRESS, which the job waits for."""
    if wait and (found := store.find("datasource", datasource_id)) is not None and found["status"] in WAITABLE:
        return found
    return ready_datasource(store, datasource_id, what)


def usable_model(model: Document, purpose: str, wait: bool) -> Document:
    """``completed_model``; with ``wait``, also one still PENDING or INPROGRESS, which the job waits for."""
    return model if wait and model["status"] in WAITABLE else completed_model(model, purpose)


def completed_model(model: Document, purpose: str) -> Document:
    """``model`` if it is COMPLETED; else the error that says it cannot be used for ``purpose`` yet."""
    if model["status"] != Status.COMPLETED.value:
        raise MlsvcError(
            ErrorCode.NOT_READY,
            f"model '{model['id']}' is {model['status']}; only a COMPLETED model can {purpose}",
            {"id": model["id"]},
        )
    return model


def name_from_uri(uri: str) -> str:
    return (PurePosixPath(uri.rstrip("/")).name or uri)[:256]


class Creator(Generic[R]):
    """Creating the resources of one kind, in the API's shape ``R``: safe retries, the resource and its job."""

    kind: ResourceKind
    shape: type[R]

    def __init__(self, metadata: MetadataStore, max_attempts: int) -> None:
        self.metadata = metadata
        self.max_attempts = max_attempts

    def created(
        self, record: dict[str, Any], body: Mapping[str, Any], tags: Mapping[str, str], job: str
    ) -> tuple[R, bool]:
        """Store a new resource and enqueue its job; (the resource, whether it is new rather than a retry)."""
        row, made = self.metadata.create(self.kind, record, request_hash(body), tags, job, self.max_attempts)
        return self.shape.model_validate(queue_note(self.metadata, row)), made

    def retried(self, resource_id: str | None, body: Mapping[str, Any]) -> R | None:
        """The resource an earlier create with this id and body made (a safe retry answers as it did)."""
        existing = self.metadata.same_request(self.kind, resource_id, request_hash(body)) if resource_id else None
        return None if existing is None else self.shape.model_validate(existing)


class Collection(Creator[R]):
    """Also reading, listing, renaming, tagging and deleting them, by id."""

    def get(self, resource_id: str) -> R:
        return self.shape.model_validate(queue_note(self.metadata, self.metadata.get(self.kind, resource_id)))

    def list(self, query: ListQuery, model_id: str | None = None) -> tuple[list[R], str | None]:
        """A page of the collection; ``model_id`` keeps those of one model (evaluations, batch predictions)."""
        return list_page(self.metadata, self.kind, self.shape, query, {"model_id": model_id} if model_id else None)

    def update(self, resource_id: str, patch: RenamePatch) -> R:
        row = rename_and_tag(self.metadata, self.kind, resource_id, patch.name, patch.tags)
        return self.shape.model_validate(row)

    def delete(self, resource_id: str) -> R:
        return self.shape.model_validate(soft_delete(self.metadata, self.kind, resource_id))
