"""The object store's interface: files and objects named by URI, streamed, written atomically."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn, Protocol, cast
from urllib.parse import quote

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.security.uris import STAGING

DATA_SUFFIXES = (".csv", ".csv.gz")
MiB = 1024 * 1024
READ_BUFFER = 1 * MiB


@dataclass(frozen=True)
class ObjectInfo:
    """One file or object: where it is, its size in bytes and, for S3, its ETag (without quotes)."""

    uri: str
    size: int
    etag: str | None


class Sink(Protocol):
    """Where open_write's bytes go until ``commit`` makes them visible or ``abort`` drops them."""

    @property
    def stream(self) -> BinaryIO: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Held(Protocol):
    """An output written under its final name that readers see only once ``publish`` is called: ``finish``
    stores the last bytes, ``abort`` drops everything (before or after ``finish``)."""

    @property
    def stream(self) -> BinaryIO: ...

    def finish(self) -> None: ...

    def publish(self) -> None: ...

    def abort(self) -> None: ...


class _StagedHold:
    """``Held`` where a store has nothing better: the bytes committed under a staged name, then moved."""

    def __init__(self, objects: ObjectStore, staged_uri: str, final_uri: str) -> None:
        self._objects, self._staged, self._final = objects, staged_uri, final_uri
        self._sink = objects.sink(staged_uri)
        self._finished = False

    @property
    def stream(self) -> BinaryIO:
        return self._sink.stream

    def finish(self) -> None:
        self._sink.commit()
        self._finished = True

    def publish(self) -> None:
        self._objects.publish(self._staged, self._final)

    def abort(self) -> None:
        if self._finished:
            self._objects.delete(self._staged)
        else:
            self._sink.abort()


class ObjectStore(ABC):
    """Streams bytes to and from one kind of storage. A backend implements the primitives; reading and writing
    gzip by name, existence and small whole reads are the same for every backend."""

    @abstractmethod
    def check_uri(self, uri: str) -> str:
        """Validate a URI (scheme, local containment) and return it normalized; no I/O."""

    @abstractmethod
    def list_data_files(self, uri: str) -> list[ObjectInfo]:
        """The one file or object a URI names, or every .csv / .csv.gz under a prefix or directory, by key."""

    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """Size and ETag of one file or object."""

    @abstractmethod
    def open_raw(self, uri: str) -> BinaryIO:
        """A streamed reader of the bytes as they are stored (no decompression)."""

    @abstractmethod
    def open_range(self, uri: str, start: int, end: int) -> BinaryIO:
        """A streamed reader of the stored bytes ``[start, end)`` of one file or object (a partition of it)."""

    @abstractmethod
    def sink(self, uri: str) -> Sink:
        """Where the bytes of a new file or object go until they are committed under ``uri``."""

    def hold(self, final_uri: str, staged_uri: str) -> Held:
        """A writer of ``final_uri`` whose bytes readers see only once published; by default they are committed
        under ``staged_uri`` (a name inside a staging folder) and moved at publish. Its unfinished remains, if its
        writer dies, are under ``staged_uri`` or found by ``abort_unfinished``."""
        return _StagedHold(self, staged_uri, final_uri)

    def abort_unfinished(self, uri: str) -> None:
        """Drop what unfinished ``hold`` writers left under names starting with ``uri`` (best effort; nothing on
        stores whose holds are staged files)."""
        return None

    @abstractmethod
    def publish(self, src_uri: str, dst_uri: str) -> None:
        """Move a finished output from its temporary name to its final one, where readers see it whole."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove one file or object; nothing happens if it is already gone."""

    def delete_staging(self, uri: str, keep: str | None = None) -> None:
        """Remove a staging area (a folder or prefix inside a '.staging' folder) and everything in it, whatever
        the names: staged outputs, the temporary files of a writer that was killed, an S3 upload's parts; and on
        local files the staging folders this leaves empty. ``keep`` (inside ``uri``) is left as it is. Refuses
        any other place, so that no bug can empty a folder of data. Nothing happens where nothing is."""
        name = self.check_uri(uri).replace("\\", "/")
        if STAGING not in name.rstrip("/").split("/")[:-1]:
            raise ValueError(f"{uri} is not inside a '{STAGING}' folder")
        self._delete_tree(uri, keep)

    @abstractmethod
    def _delete_tree(self, uri: str, keep: str | None) -> None:
        """``delete_staging``'s work, once the place was checked."""

    def exists(self, uri: str) -> bool:
        """Whether the URI names an existing file or object (a directory or bare prefix is not one)."""
        try:
            self.stat(uri)
        except MlsvcError as exc:
            if exc.code in (ErrorCode.DATA_NOT_FOUND, ErrorCode.INVALID_REQUEST):
                return False
            raise
        return True

    def open_read(self, uri: str) -> BinaryIO:
        """A streamed binary reader; names ending in .gz are gunzipped, so callers always see plain bytes."""
        name = self.check_uri(uri)
        raw = self.open_raw(uri)
        if not name.lower().endswith(".gz"):
            return raw
        gz = gzip.GzipFile(filename="", mode="rb", fileobj=raw)
        return cast(BinaryIO, io.BufferedReader(_GzipErrors(gz, raw, name), READ_BUFFER))

    def read_bytes(self, uri: str, limit: int) -> bytes:
        """The whole (decompressed) content of a small file such as a schema; refuses more than ``limit`` bytes."""
        with self.open_read(uri) as reader:
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"{uri} is larger than {limit} bytes, the most mlsvc reads whole for this kind of file",
                {"uri": uri, "limit": limit},
            )
        return data

    @contextmanager
    def open_write(self, uri: str, compressed: bool = False) -> Iterator[BinaryIO]:
        """A binary writer that appears under ``uri`` only on a clean exit; names ending in .gz are gzipped, unless
        the caller writes gzip itself (``compressed``: members of its own, compressed where it has the cores)."""
        gzipped = self.check_uri(uri).lower().endswith(".gz") and not compressed
        sink = self.sink(uri)
        try:
            # mtime=0 so the same rows always give the same bytes (and the same ETag).
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=sink.stream, mtime=0) if gzipped else sink.stream
            yield cast(BinaryIO, stream)
            if gzipped:
                stream.close()  # writes the gzip trailer; the sink itself is finished by commit
            sink.commit()
        except BaseException:
            sink.abort()
            raise

    @staticmethod
    def join(base_uri: str, *parts: str) -> str:
        """Append path segments to a URI or path, with exactly one '/' between them."""
        segments = [p.strip("/") for p in parts if p.strip("/")]
        if not segments:
            return base_uri
        if base_uri.lower().startswith("file://"):
            segments = [quote(s) for s in segments]
        elif not base_uri.lower().startswith("s3://"):
            return os.path.join(base_uri, *segments)
        return "/".join([base_uri.rstrip("/"), *segments])


def is_data_file(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def raise_nothing_found(uri: str, seen: int | None) -> NoReturn:
    others = f" ({seen} other objects are there)" if seen else ""
    raise MlsvcError(
        ErrorCode.DATA_NOT_FOUND,
        f"no .csv or .csv.gz files under {uri}{others}; check the path, and that the files end in .csv or .csv.gz",
        {"uri": uri},
    )


class _GzipErrors(io.RawIOBase):
    """Reads through a GzipFile, reporting a bad or truncated gzip as INVALID_DATA when it is met."""

    def __init__(self, gz: gzip.GzipFile, source: BinaryIO, name: str) -> None:
        super().__init__()
        self._gz = gz
        self._source = source
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._gz.readinto(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            why = "it ends early, so it was probably cut short" if isinstance(exc, EOFError) else str(exc)
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"{self._name} is not a valid gzip file ({why}); names ending in .gz are decompressed, "
                "so rename a plain CSV to end in .csv",
                {"uri": self._name},
            ) from exc

    def close(self) -> None:
        if not self.closed:
            self._gz.close()
            self._source.close()  # GzipFile leaves a passed-in fileobj open
        super().close()
