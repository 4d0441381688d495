"""Model references: an id, ``name:VERSION``, ``name:ALIAS`` or a bare ``name``, resolved to one version."""

from __future__ import annotations

import time

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Document, MetadataStore

MAX_VERSION = 2**31 - 1
# How long a process may answer from a resolved reference: an alias moved (or a version deleted) through another
# API replica is followed by this one within this time.
ALIAS_FOLLOW_S = 1.0


class ModelRefs:
    """Resolves references against the store; ``cached`` answers from the last ``ttl_s``, so a predict does not
    query the store every time. Changes made through this process are seen at once (``clear``), changes made
    elsewhere within ``ttl_s``."""

    def __init__(self, metadata: MetadataStore, ttl_s: float = ALIAS_FOLLOW_S) -> None:
        self.metadata = metadata
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, Document]] = {}

    def resolve(self, ref: str) -> Document:
        """A model by id, ``name:VERSION``, ``name:ALIAS`` or bare ``name`` (production, else newest COMPLETED)."""
        found = self.metadata.find("model", ref)
        if found is not None:
            return found
        name, _, selector = ref.partition(":")
        if selector.isascii() and selector.isdigit():
            version = int(selector)
            found = self.metadata.model_by_version(name, version) if version <= MAX_VERSION else None
        else:
            version_of_alias = self.metadata.alias_version(name, selector or "production")
            if version_of_alias is not None:
                found = self.metadata.model_by_version(name, version_of_alias)
            elif not selector:
                found = self.metadata.latest_completed_model(name)
        if found is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, _not_found_message(ref, self.metadata.model_name_exists(name)), {"ref": ref}
            )
        return found

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


def _not_found_message(ref: str, name_exists: bool) -> str:
    if name_exists:
        return (
            f"model '{ref}' not found: the name exists but no COMPLETED version or alias matches "
            "(use name, name:VERSION or name:ALIAS)"
        )
    return f"model '{ref}' not found"
