"""The one validator of data URIs.

Threat: a caller names a URI to make the service read or write something it should not: a file outside the
local data roots (``/etc/passwd``, ``../../``, a symlink that leads out), or one of the service's own files
(its metadata database, MLflow's store and artifacts, a job's staging area), a scheme the service does not speak
(``http://`` to reach an internal host), a remote host in a ``file://`` URI, credentials echoed back in a
message, or a NUL byte that truncates a path. Every URI a request carries, and every path the object store
opens, goes through ``UriValidator.parse`` first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from mlsvc.errors import ErrorCode, MlsvcError

SUPPORTED = "s3://bucket/key, s3://bucket/prefix/, file:///absolute/path or a local path"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


@dataclass(frozen=True)
class S3Location:
    """A parsed s3:// URI; an empty key or one ending in '/' names a prefix."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")


Location = S3Location | Path


STAGING = ".staging"


class UriValidator:
    """Parses URIs into S3 locations or absolute, symlink-free local paths inside the local roots and outside
    the service's own files (``own``: local paths, and s3:// prefixes ending in '/')."""

    def __init__(self, local_roots: tuple[Path, ...] = (), own: tuple[str, ...] = ()) -> None:
        # Roots are resolved here too, so a symlinked root compares equal to the paths resolved under it.
        self.local_roots = tuple(Path(r).expanduser().resolve() for r in local_roots)
        self.own_prefixes = tuple(p for p in own if p.startswith("s3://"))
        self.own_paths = tuple(Path(p).expanduser().resolve() for p in own if not p.startswith("s3://"))

    def check(self, uri: str) -> str:
        """Validate a URI a caller gave (scheme, containment, not the service's own files, not a job's staging
        area) and return it normalized; no I/O."""
        return self._checked(uri)[0]

    def _checked(self, uri: str) -> tuple[str, Location]:
        location = self.parse(uri)
        normalized = location.uri if isinstance(location, S3Location) else str(location)
        if STAGING in normalized.replace("\\", "/").split("/"):
            raise MlsvcError(
                ErrorCode.PATH_NOT_ALLOWED,
                f"{redact(uri)} is inside a '{STAGING}' folder, where jobs stage outputs before publishing them; "
                "name a place outside it",
                {"uri": redact(uri)},
            )
        return normalized, location

    def check_readable(self, uri: str) -> str:
        """``check``, and for a local path also that something is there to read (S3 is read by the job, which
        reports a missing key on the resource)."""
        normalized, location = self._checked(uri)
        if isinstance(location, Path) and not location.exists():
            raise MlsvcError(
                ErrorCode.DATA_NOT_FOUND,
                f"no file or folder at {location} (from '{redact(uri)}'); check the path (a relative path is "
                f"relative to the server's working directory, {Path.cwd()})",
                {"uri": redact(uri)},
            )
        return normalized

    def is_own(self, location: Location) -> bool:
        """Whether a parsed location is (under) one of the service's own files or folders."""
        if isinstance(location, S3Location):
            return any(location.uri.startswith(p) or location.uri + "/" == p for p in self.own_prefixes)
        return any(location == p or location.is_relative_to(p) or _sidecar(location, p) for p in self.own_paths)

    def refuse_own(self, location: Location, uri: str) -> Location:
        if self.is_own(location):
            raise MlsvcError(
                ErrorCode.PATH_NOT_ALLOWED,
                f"{redact(uri)} is one of mlsvc's own files (its metadata database, its MLflow store and artifacts "
                "under MLSVC_HOME or MLSVC_MLFLOW_ARTIFACT_ROOT), which are never read or written as data; "
                "keep data and outputs elsewhere",
                {"uri": redact(uri)},
            )
        return location

    def parse(self, uri: str) -> Location:
        if not uri or "\x00" in uri:
            raise MlsvcError(ErrorCode.INVALID_REQUEST, "a URI must be a non-empty string without NUL bytes")
        lowered = uri.lower()
        if lowered.startswith("s3://"):
            return self.refuse_own(parse_s3(uri), uri)
        if lowered.startswith("file://"):
            return self.contain(file_uri_path(uri), uri)
        scheme = _SCHEME.match(uri)
        if scheme:
            raise MlsvcError(
                ErrorCode.UNSUPPORTED_URI,
                f"'{redact(uri)}' uses scheme '{scheme.group(1)}', which mlsvc does not read or write; "
                f"use {SUPPORTED} (write a local name containing ':' as ./name)",
                {"uri": redact(uri)},
            )
        return self.contain(Path(uri), uri)

    def contain(self, path: Path, uri: str) -> Path:
        """The absolute, symlink-free form of ``path``, provided it lies inside a local root."""
        if "\x00" in str(path):
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"the path {uri!r} holds a NUL character", {"uri": uri})
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop on Python 3.11
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"cannot resolve the path {uri}: {exc}", {"uri": uri}) from exc
        if not self.local_roots or any(resolved.is_relative_to(root) for root in self.local_roots):
            self.refuse_own(resolved, uri)
            return resolved
        roots = ", ".join(str(r) for r in self.local_roots)
        shown = f"{uri} (which resolves to {resolved})" if str(resolved) != uri else uri
        raise MlsvcError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"{shown} is outside the local data roots mlsvc may use ({roots}); move the data under one of them, "
            f"or add its folder to MLSVC_LOCAL_ROOTS (folders separated by '{os.pathsep}') and restart",
            {"uri": uri, "local_roots": [str(r) for r in self.local_roots]},
        )


def _sidecar(path: Path, own: Path) -> bool:
    """SQLite's companions of a database file (``mlsvc.db-wal``, ``mlsvc.db-shm``, ``mlsvc.db-journal``)."""
    return path.parent == own.parent and path.name.startswith(own.name + "-")


def parse_s3(uri: str) -> S3Location:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "@" in bucket or ":" in bucket:
        raise MlsvcError(
            ErrorCode.UNSUPPORTED_URI,
            f"'{redact(uri)}' is not an S3 URI mlsvc understands; write s3://bucket/key or s3://bucket/prefix/",
            {"uri": redact(uri)},
        )
    return S3Location(bucket, key)


def file_uri_path(uri: str) -> Path:
    """The local path of file:///p or file://localhost/p, percent-decoded."""
    host, slash, rest = uri[len("file://") :].partition("/")
    if host not in ("", "localhost") or not slash:
        raise MlsvcError(
            ErrorCode.UNSUPPORTED_URI,
            f"'{redact(uri)}' names a file on host '{host}'; file URIs must be local: file:///absolute/path",
            {"uri": redact(uri)},
        )
    return Path(unquote("/" + rest))


def redact(uri: str) -> str:
    """Drop a user:password@ part before a URI is echoed back in a message."""
    return _USERINFO.sub(r"\1***@", uri)
