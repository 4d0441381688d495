"""The object store on local files: paths inside the local roots, written under hidden names and renamed."""

from __future__ import annotations

import errno
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects.base import READ_BUFFER, ObjectInfo, ObjectStore, Sink, is_data_file, raise_nothing_found
from mlsvc.security.uris import STAGING, S3Location, UriValidator


class LocalObjectStore(ObjectStore):
    """Files under the local roots (all of them when no roots are given)."""

    def __init__(self, validator: UriValidator) -> None:
        self.validator = validator

    def check_uri(self, uri: str) -> str:
        return str(self._path(uri))

    def _path(self, uri: str) -> Path:
        location = self.validator.parse(uri)
        if isinstance(location, S3Location):
            raise MlsvcError(ErrorCode.UNSUPPORTED_URI, f"{location.uri} is not a local path", {"uri": uri})
        return location

    def list_data_files(self, uri: str) -> list[ObjectInfo]:
        # mlsvc's own files under the folder (its home inside the data folder, say) are not the caller's data.
        files = [f for f in _local_list_data_files(self._path(uri)) if not self.validator.is_own(Path(f.uri))]
        for info in files:
            # A symlinked file inside the folder may point outside the roots: refuse it by name.
            self.validator.contain(Path(info.uri), info.uri)
        if not files:
            raise_nothing_found(uri, None)
        return files

    def stat(self, uri: str) -> ObjectInfo:
        path = self._path(uri)
        with _local_errors(path, "read"):
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
            return ObjectInfo(str(path), path.stat().st_size, None)

    def open_raw(self, uri: str) -> BinaryIO:
        path = self._path(uri)
        with _local_errors(path, "read"):
            return path.open("rb")

    def open_range(self, uri: str, start: int, end: int) -> BinaryIO:
        path = self._path(uri)
        with _local_errors(path, "read"):
            raw = path.open("rb", buffering=0)
        raw.seek(start)
        return cast(BinaryIO, io.BufferedReader(_Window(raw, max(0, end - start)), READ_BUFFER))

    def sink(self, uri: str) -> Sink:
        return _LocalAtomicFile(self._path(uri))

    def publish(self, src_uri: str, dst_uri: str) -> None:
        src, dst = self._path(src_uri), self._path(dst_uri)
        if src != dst:
            _local_publish(src, dst)

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        with _local_errors(path, "delete"):
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
            path.unlink(missing_ok=True)

    def _delete_tree(self, uri: str, keep: str | None) -> None:
        root = self._path(uri)
        kept = self._path(keep) if keep is not None else None
        with _local_errors(root, "delete"):
            _remove(root, kept)
            # Then the staging folders left empty, up to the '.staging' folder itself (another job's keep it).
            for folder in (root, *root.parents):
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # not empty: what is above it is not empty either
                    break
                if folder.name == STAGING:
                    break


def _remove(path: Path, kept: Path | None) -> None:
    """Remove ``path`` and all under it but ``kept``; a file or folder that is already gone is no error."""
    if kept is not None and kept.is_relative_to(path):
        if path != kept and path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                _remove(child, kept)
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # removed meanwhile (another attempt cleaning the same area)
        pass


@contextmanager
def _local_errors(path: Path, action: str) -> Iterator[None]:
    """Turn an OSError raised inside into an MlsvcError naming the path."""
    try:
        yield
    except IsADirectoryError as exc:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"{path} is a directory; name a file", {"uri": str(path)}) from exc
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise MlsvcError(ErrorCode.DATA_NOT_FOUND, f"no file at {path}", {"uri": str(path)}) from exc
    except PermissionError as exc:
        raise MlsvcError(
            ErrorCode.ACCESS_DENIED,
            f"mlsvc may not {action} {path}: check the permissions of the file and its folders for the user "
            "mlsvc runs as",
            {"uri": str(path)},
        ) from exc
    except OSError as exc:
        raise MlsvcError(
            ErrorCode.INTERNAL, f"could not {action} {path}: {exc.strerror or exc}", {"uri": str(path)}
        ) from exc


def _local_list_data_files(path: Path) -> list[ObjectInfo]:
    with _local_errors(path, "read"):
        if not path.is_dir():
            return [ObjectInfo(str(path), path.stat().st_size, None)]
        found = []

        def _raise(exc: OSError) -> NoReturn:
            raise exc

        # followlinks=False: a symlinked folder could lead anywhere, including round in a loop.
        for folder, dirs, files in os.walk(path, onerror=_raise):
            dirs.sort()
            for name in files:
                if is_data_file(name):
                    file = Path(folder, name)
                    found.append(ObjectInfo(str(file), file.stat().st_size, None))
    if not found:
        raise_nothing_found(str(path), None)
    return sorted(found, key=lambda info: info.uri)


class _LocalAtomicFile:
    """A hidden temporary file next to the target, renamed over it only once everything was written."""

    def __init__(self, final: Path) -> None:
        self._final = final
        with _local_errors(final, "write"):
            if final.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(final))
            final.parent.mkdir(parents=True, exist_ok=True)
            self._temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
            # os.open with 0o666 lets the umask decide the mode, as for any file the user creates.
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._file = os.fdopen(fd, "wb")

    @property
    def stream(self) -> BinaryIO:
        return self._file

    def commit(self) -> None:
        with _local_errors(self._final, "write"):
            if self._file.closed:  # the caller closed it (a TextIOWrapper does): sync through a new descriptor
                fd = os.open(self._temp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            # fsync first, so after a crash the final name holds either the old file or the whole new one.
            os.replace(self._temp, self._final)

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


def _local_publish(src: Path, dst: Path) -> None:
    with _local_errors(dst, "write"):
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system: copy beside the target, then rename, so readers still never see half a file.
            temp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
            try:
                shutil.copyfile(src, temp)
                os.replace(temp, dst)
            finally:
                temp.unlink(missing_ok=True)
            src.unlink()


class _Window(io.RawIOBase):
    """The next ``length`` bytes of an open file, then its end."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        n = self._raw.readinto(view) if view else 0  # type: ignore[attr-defined]
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
