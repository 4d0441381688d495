"""Artifact integrity: digests of a model version's files, to be checked before any byte is deserialized.

Threat: someone with write access to the artifact store (an S3 bucket, MLSVC_HOME) swaps a model's pickle for
one that runs code when loaded. A digest recorded in the metadata store when a version is registered, and
compared before loading, turns that into a refused load. This module computes and compares digests; the
registry and the scorers call it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path

CHUNK = 1024 * 1024


def file_digest(path: Path) -> str:
    """SHA-256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its path relative to ``root`` (with '/')."""
    return {p.relative_to(root).as_posix(): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def mismatches(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """The files whose digest differs, that are missing, or that were added; empty when all match."""
    names = sorted(set(expected) | set(actual))
    return [n for n in names if not hmac.compare_digest(expected.get(n, ""), actual.get(n, ""))]


def signature(key: str | None, identity: str, digests: Mapping[str, str]) -> str | None:
    """HMAC-SHA256 over a version's identity and its files' digests (None without a server key), so a digest
    rewritten in the metadata store does not match either."""
    if not key:
        return None
    message = json.dumps({"identity": identity, "digests": dict(sorted(digests.items()))}, sort_keys=True)
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def problems(
    key: str | None,
    identity: str,
    recorded: Mapping[str, str] | None,
    recorded_signature: str | None,
    actual: Mapping[str, str],
) -> list[str]:
    """What is wrong with a version's files against what was recorded at registration; empty when they match."""
    if not recorded:
        return ["no digests were recorded for this version (it was registered before mlsvc recorded them)"]
    if key:
        expected = signature(key, identity, recorded)
        if recorded_signature is None or not hmac.compare_digest(expected or "", recorded_signature):
            return ["the recorded digests do not carry a valid signature for this server's MLSVC_SECRET_KEY"]
    return [_describe(name, recorded, actual) for name in mismatches(recorded, actual)]


def _describe(name: str, recorded: Mapping[str, str], actual: Mapping[str, str]) -> str:
    if name not in actual:
        return f"{name} is missing"
    if name not in recorded:
        return f"{name} was added"
    return f"{name} is not the file registered (SHA-256 differs)"
