"""Staged outputs: a job's results written under temporary names, then published whole with their manifest last."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mlsvc.errors import MlsvcError
from mlsvc.objects.base import Held, ObjectStore, is_data_file
from mlsvc.security.uris import STAGING

log = logging.getLogger("mlsvc.staging")


class StagedOutputs:
    """The outputs one attempt of one job writes under ``prefix``.

    Each output is written to the name ``stage`` gives it, ``prefix/.staging/<owner_id>/attempt-<n>/…``, where
    no reader looks; ``publish`` then moves every one to its final name and writes the manifest last, so a
    reader that finds the manifest finds every output it lists whole, and a retried or failed job never leaves
    half a result under a final name. The staged name is a function of the final one, so any process (a
    partition of a partitioned job, say) can stage an output that another publishes. An output this process
    writes itself may instead be ``hold``-ed: on S3 it is then written to its final key as a multipart upload that
    only ``publish`` completes (nothing is copied), and what a dead attempt left unfinished under ``held_under`` is
    aborted with the rest.
    """

    def __init__(
        self, objects: ObjectStore, prefix: str, owner_id: str, attempt: int, held_under: str | None = None
    ) -> None:
        self.objects = objects
        self.prefix = prefix.rstrip("/")
        self.root = _join(self.prefix, STAGING, owner_id)
        self.area = _join(self.root, f"attempt-{attempt}")
        # Where outputs written under their final names (``hold``) may be: only this owner's names begin so.
        self.held_under = held_under
        self._held: dict[str, Held] = {}

    def hold(self, final_uri: str) -> Held:
        """A writer of the output that ``publish`` will make visible under ``final_uri``: written there directly
        where the store can keep it unseen until then (an S3 multipart upload, completed at publish), else under
        its staged name. ``final_uri`` must begin with ``held_under``."""
        if self.held_under is None or not final_uri.startswith(self.held_under):
            raise ValueError(f"{final_uri} is not under {self.held_under}")
        held = self.objects.hold(final_uri, self.stage(final_uri))
        self._held[final_uri] = held
        return held

    def stage(self, final_uri: str) -> str:
        """Where to write the output that ``publish`` will move to ``final_uri`` (a .csv or .csv.gz under the
        prefix, the kind of name the object store lists and reads back)."""
        inside = self.prefix + "/"
        if not final_uri.startswith(inside) or not is_data_file(final_uri):
            raise ValueError(f"{final_uri} is not a .csv or .csv.gz under {inside}")
        return _join(self.area, final_uri[len(inside) :])

    def probe(self) -> None:
        """Write and remove a small file in this attempt's staging area: a job checks it can write its output (its
        credentials, the bucket, the folder's permissions) before it does any work."""
        probe = _join(self.area, "probe.csv")
        try:
            with self.objects.open_write(probe) as out:
                out.write(b"probe\n")
            self.objects.delete(probe)
        except MlsvcError as exc:
            raise MlsvcError(
                exc.code,
                f"the output location {self.prefix}/ cannot be written, so nothing was scored: {exc.message}",
                exc.details,
            ) from exc

    def publish(self, final_uris: Sequence[str], manifest_uri: str, manifest: bytes) -> None:
        """Move each staged output to its final name, then write the manifest (itself written atomically), then
        drop the job's staging area: what an earlier attempt may have left, and this one's emptied folders."""
        for final in final_uris:
            held = self._held.pop(final, None)
            if held is not None:
                held.publish()
            else:
                self.objects.publish(self.stage(final), final)
        with self.objects.open_write(manifest_uri) as out:
            out.write(manifest)
        self.discard()

    def discard_earlier_attempts(self) -> None:
        """A retried job starts clean: whatever other attempts of this job left is removed, their temporary files
        and unfinished uploads too (best effort)."""
        _discard(self.objects, self.root, keep=self.area)
        _abort_unfinished(self.objects, self.held_under)

    def abandon(self) -> None:
        """Remove what this attempt staged or held, when it fails (best effort; a later attempt would remove it
        too)."""
        held, self._held = list(self._held.values()), {}
        for output in held:
            try:
                output.abort()
            except MlsvcError as exc:
                log.warning("could not drop an unpublished output: %s", exc.message)
        _discard(self.objects, self.area)
        _abort_unfinished(self.objects, self.held_under)

    def discard(self) -> None:
        """Remove the job's whole staging area, every attempt's (once the job has ended, whatever its outcome)."""
        _discard(self.objects, self.root)


def discard_staged(objects: ObjectStore, prefix: str, owner_id: str, held_under: str | None = None) -> None:
    """Remove what any attempt of the job ``owner_id`` staged under ``prefix``, or left unfinished under
    ``held_under`` (a job that ended without publishing: failed, cancelled, or given up after its worker died)."""
    _discard(objects, _join(prefix.rstrip("/"), STAGING, owner_id))
    _abort_unfinished(objects, held_under)


def _abort_unfinished(objects: ObjectStore, held_under: str | None) -> None:
    if held_under is None:
        return
    try:
        objects.abort_unfinished(held_under)
    except MlsvcError as exc:
        log.warning("could not drop the unfinished uploads under %s: %s", held_under, exc.message)


def _discard(objects: ObjectStore, under: str, keep: str | None = None) -> None:
    try:
        objects.delete_staging(under, keep)
    except MlsvcError as exc:  # the store refused or failed: the next attempt, or the operator, may clean up
        log.warning("could not remove the staged files under %s: %s", under, exc.message)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])
