"""What a job handler is given: its resource, the planes, the claim it runs under and a way to report progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Claim, Document, InputNotReady, JobCancelled, ResourceKind

if TYPE_CHECKING:
    from mlsvc.planes import Planes


class JobContext:
    """One run of one job: the resource as claimed, the planes of this worker, and what to do once it is done."""

    def __init__(self, planes: Planes, claim: Claim, cancelled: threading.Event | None = None) -> None:
        self.settings = planes.settings
        self.metadata = planes.metadata
        self.queue = planes.queue
        self.objects = planes.objects
        self.registry = planes.registry
        self.claim = claim
        # Set by the worker's heartbeat once the resource is deleted; the next progress report then stops the job.
        self.cancelled = cancelled or threading.Event()
        self.resource: Document = self.metadata.get(claim.resource_kind, claim.resource_id)
        # Set with the result, in its transaction: (name, alias, version).
        self.aliases: list[tuple[str, str, int]] = []
        # Run once the result is recorded (mirrors in other systems, e.g. MLflow's aliases).
        self.after_complete: list[Callable[[], None]] = []

    def progress(self, fraction: float, **fields: Any) -> None:
        """Report progress (0–1) and any partial fields; raises JobCancelled once the resource is deleted (the
        handler's cleanup runs as the exception passes), LeaseLost if the job was taken away."""
        if self.cancelled.is_set():
            raise JobCancelled(f"{self.claim.resource_kind.replace('_', ' ')} '{self.claim.resource_id}' was deleted")
        self.queue.report(self.claim, {"progress": max(0.0, min(1.0, fraction)), **fields})

    def completed(self, kind: ResourceKind, resource_id: str, what: str | None = None) -> Document:
        """Another resource this job reads, which must be COMPLETED (``what`` names it in the message)."""
        resource = self.metadata.get(kind, resource_id)
        if resource["status"] in ("PENDING", "INPROGRESS"):
            raise InputNotReady(f"waiting for {what or kind} '{resource['id']}' ({resource['status']}) to complete")
        if resource["status"] != "COMPLETED":
            raise MlsvcError(
                ErrorCode.NOT_READY, f"{what or kind} '{resource['id']}' is {resource['status']}, not COMPLETED"
            )
        return resource
