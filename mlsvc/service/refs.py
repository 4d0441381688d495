"""Model references: an id, ``name:VERSION``, ``name:ALIAS`` or a bare ``name``, resolved to one version."""

from __future__ import annotations

import time

from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.metadata import Document, MetadataStore
from mlsvc.resources import Status

MAX_VERSION = 2**31 - 1
# How long a process may answer from a resolved reference: an alias moved (or a version deleted) through another
# API replica is followed by this one within this time.
ALIAS_FOLLOW_S = 1.0
PRODUCTION = "production"
NEVER_PROMOTED = "promote is 'never'"  # the reason promotion.promote gives when told not to run


class ModelRefs:
    """Resolves references against the store; ``cached`` answers from the last ``ttl_s``, so a predict does not
    query the store every time. Changes made through this process are seen at once (``clear``), changes made
    elsewhere within ``ttl_s``."""

    def __init__(self, metadata: MetadataStore, ttl_s: float = ALIAS_FOLLOW_S) -> None:
        self.metadata = metadata
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, Document]] = {}

    def resolve(self, ref: str) -> Document:
        """A model by id, ``name:VERSION``, ``name:ALIAS`` or bare ``name`` (see ``by_name``), in any status: a
        version in progress is found, so its status and progress can be followed by the reference it will have."""
        found = self.metadata.find("model", ref)
        if found is not None:
            return found
        name, _, selector = ref.partition(":")
        if not selector:
            found = self.by_name(name)
        elif selector.isascii() and selector.isdigit():
            version = int(selector)
            found = self.metadata.model_by_version(name, version) if version <= MAX_VERSION else None
        else:
            version_of_alias = self.metadata.alias_version(name, selector)
            found = self.metadata.model_by_version(name, version_of_alias) if version_of_alias is not None else None
        if found is None:
            raise MlsvcError(ErrorCode.NOT_FOUND, self._not_found_message(ref, name), {"ref": ref})
        return found

    def by_name(self, name: str) -> Document | None:
        """What a bare name means: its ``production`` version; else the version that was production last (if the
        alias went with a deleted version); else the newest COMPLETED version promotion did not reject; else the
        newest version of any other status (one in progress first), so that it can be looked at."""
        production = self.metadata.alias_version(name, PRODUCTION)
        if production is not None:
            return self.metadata.model_by_version(name, production)
        versions = [v for v in self.metadata.model_versions(name) if v["status"] != Status.DELETED.value]
        completed = [v for v in versions if v["status"] == Status.COMPLETED.value]
        promoted = sorted((v for v in completed if v["promoted_at"]), key=lambda v: str(v["promoted_at"]))
        unrejected = [v for v in completed if not was_rejected(v)]
        unfinished = [v for v in versions if v["status"] in (Status.PENDING.value, Status.INPROGRESS.value)]
        for pick in (promoted[-1:], unrejected, unfinished, versions):
            if pick:
                return self.metadata.find("model", pick[0]["id"])
        return None

    def _not_found_message(self, ref: str, name: str) -> str:
        versions = self.metadata.model_versions(name)
        if versions:
            numbers = ", ".join(str(v["version"]) for v in versions[:10] if v["version"] is not None)
            return (
                f"model '{ref}' not found: '{name}' has versions {numbers or 'none yet'} and aliases "
                f"{self.metadata.aliases(name) or 'none'} (use name, name:VERSION or name:ALIAS)"
            )
        known = self.metadata.model_names()
        hint = did_you_mean(name, known)
        listed = ", ".join(f"'{n}'" for n in known[:20]) + (" …" if len(known) > 20 else "")
        return f"model '{ref}' not found{hint}; known models: {listed or 'none yet'}"

    def cached(self, ref: str) -> Document:
        now = time.monotonic()
        hit = self._items.get(ref)
        if hit is not None and hit[0] > now:
            return hit[1]
        model = self.resolve(ref)
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[ref] = (now + self.ttl_s, model)
        return model

    def peek(self, ref: str) -> Document | None:
        """The resolved model if it is still fresh, without resolving it."""
        hit = self._items.get(ref)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def clear(self) -> None:
        self._items.clear()


def was_rejected(version: Document) -> bool:
    """Whether automatic promotion judged this version worse than production (not merely told not to run)."""
    if version.get("promoted_at"):
        return False  # it was production once (an operator moved the alias to it), whatever promotion said
    promotion = version.get("promotion") or {}
    return promotion.get("promoted") is False and promotion.get("reason") != NEVER_PROMOTED
