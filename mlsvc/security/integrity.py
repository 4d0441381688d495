"""Artifact integrity: digests of a model version's files, to be checked before any byte is deserialized.

Threat: someone with write access to the artifact store (an S3 bucket, MLSVC_HOME) swaps a model's pickle for
one that runs code when loaded. A digest recorded in the metadata store when a version is registered, and
compared before loading, turns that into a refused load. This module computes and compares digests; the
registry and the scorers call it.
"""

from __future__ import annotations

import hashlib
import hmac
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
