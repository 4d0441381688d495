"""Reading and writing s3://, file:// and local URIs, streamed, never a whole file in memory."""

from __future__ import annotations

import difflib
import errno
import gzip
import io
import os
import re
import shutil
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, Protocol, cast
from urllib.parse import quote, unquote

import boto3
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)

from mlsvc.errors import ErrorCode, MlsvcError

DATA_SUFFIXES = (".csv", ".csv.gz")
SUPPORTED = "s3://bucket/key, s3://bucket/prefix/, file:///absolute/path or a local path"

MiB = 1024 * 1024
# S3's limits: CopyObject handles at most 5 GiB, an upload has at most 10,000 parts, parts but the last >= 5 MiB.
_COPY_OBJECT_LIMIT = 5 * 1024 * MiB
_MAX_PARTS = 10_000
_READ_BUFFER = 1 * MiB
_READ_RESUMES = 3

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")
_ACCESS_CODES = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AccountProblem",
}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
# Broken or stalled response streams; a read resumes from where it stopped rather than failing a 10 GB job.
_STREAM_ERRORS = (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class ObjectInfo:
    """One file or object: where it is, its size in bytes and, for S3, its ETag (without quotes)."""

    uri: str
    size: int
    etag: str | None


@dataclass(frozen=True)
class _S3Path:
    """A parsed s3:// URI; an empty key or one ending in '/' names a prefix."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")


_Location = _S3Path | Path


class Storage:
    """Streams bytes to and from S3 and local files, keeping local paths inside the configured roots."""

    def __init__(
        self,
        local_roots: tuple[Path, ...] = (),
        *,
        s3_page_size: int = 1000,
        s3_part_size: int = 8 * MiB,
        s3_copy_threshold: int = _COPY_OBJECT_LIMIT,
    ) -> None:
        # Roots are resolved here too, so a symlinked root compares equal to the paths resolved under it.
        self.local_roots = tuple(Path(r).expanduser().resolve() for r in local_roots)
        self.s3_page_size = s3_page_size
        self.s3_part_size = max(s3_part_size, 5 * MiB)  # S3 refuses smaller parts (all but the last)
        self.s3_copy_threshold = min(s3_copy_threshold, _COPY_OBJECT_LIMIT)  # CopyObject cannot do more

    # -- URIs ---------------------------------------------------------------------------------------

    def check_uri(self, uri: str) -> str:
        """Validate a URI (scheme, local containment) and return it normalized; no I/O for S3."""
        location = self._parse(uri)
        return location.uri if isinstance(location, _S3Path) else str(location)

    def join(self, base_uri: str, *parts: str) -> str:
        """Append path segments to a URI or path, with exactly one '/' between them."""
        segments = [p.strip("/") for p in parts if p.strip("/")]
        if not segments:
            return base_uri
        if base_uri.lower().startswith("file://"):
            segments = [quote(s) for s in segments]
        elif not base_uri.lower().startswith("s3://"):
            return os.path.join(base_uri, *segments)
        return "/".join([base_uri.rstrip("/"), *segments])

    # -- reading ------------------------------------------------------------------------------------

    def list_data_files(self, uri: str) -> list[ObjectInfo]:
        """The one file or object a URI names, or every .csv / .csv.gz under a prefix or directory, by key."""
        location = self._parse(uri)
        if isinstance(location, _S3Path):
            return self._s3_list_data_files(location)
        files = _local_list_data_files(location)
        for info in files:
            # A symlinked file inside the folder may point outside the roots: refuse it by name.
            self._contained(Path(info.uri), info.uri)
        return files

    def stat(self, uri: str) -> ObjectInfo:
        """Size and ETag of one file or object."""
        location = self._parse(uri)
        if isinstance(location, _S3Path):
            return self._s3_stat(location)
        with _local_errors(location, "read"):
            if location.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(location))
            return ObjectInfo(str(location), location.stat().st_size, None)

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
        location = self._parse(uri)
        raw: BinaryIO
        if isinstance(location, _S3Path):
            self._require_object_name(location)
            raw = cast(BinaryIO, io.BufferedReader(_S3Reader(_client(), location), _READ_BUFFER))
        else:
            with _local_errors(location, "read"):
                raw = location.open("rb")
        name = location.key if isinstance(location, _S3Path) else location.name
        if not name.lower().endswith(".gz"):
            return raw
        gz = gzip.GzipFile(filename="", mode="rb", fileobj=raw)
        return cast(BinaryIO, io.BufferedReader(_GzipErrors(gz, raw, _display(location)), _READ_BUFFER))

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

    # -- writing ------------------------------------------------------------------------------------

    @contextmanager
    def open_write(self, uri: str) -> Iterator[BinaryIO]:
        """A binary writer that appears under ``uri`` only on a clean exit; names ending in .gz are gzipped."""
        location = self._parse(uri)
        sink: _Sink
        if isinstance(location, _S3Path):
            self._require_object_name(location)
            sink = _S3Upload(_client(), location, self.s3_part_size)
        else:
            sink = _LocalAtomicFile(location)
        gzipped = _display(location).lower().endswith(".gz")
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

    def publish(self, src_uri: str, dst_uri: str) -> None:
        """Move a finished output from its temporary name to its final one, where readers see it whole."""
        src, dst = self._parse(src_uri), self._parse(dst_uri)
        if src == dst:
            return  # moving onto itself; on S3 the delete after the copy would lose the object
        if isinstance(src, _S3Path) and isinstance(dst, _S3Path):
            self._s3_publish(src, dst)
        elif isinstance(src, Path) and isinstance(dst, Path):
            _local_publish(src, dst)
        else:
            raise MlsvcError(
                ErrorCode.UNSUPPORTED_URI,
                f"cannot publish {src_uri} to {dst_uri}: both must be on S3 or both local",
                {"src_uri": src_uri, "dst_uri": dst_uri},
            )

    def delete(self, uri: str) -> None:
        """Remove one file or object; nothing happens if it is already gone."""
        location = self._parse(uri)
        if isinstance(location, _S3Path):
            self._require_object_name(location)
            with _s3_errors(location, "delete"):
                _client().delete_object(Bucket=location.bucket, Key=location.key)
            return
        with _local_errors(location, "delete"):
            if location.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(location))
            location.unlink(missing_ok=True)

    # -- parsing ------------------------------------------------------------------------------------

    def _parse(self, uri: str) -> _Location:
        if not uri or "\x00" in uri:
            raise MlsvcError(ErrorCode.INVALID_REQUEST, "a URI must be a non-empty string without NUL bytes")
        lowered = uri.lower()
        if lowered.startswith("s3://"):
            return _parse_s3(uri)
        if lowered.startswith("file://"):
            return self._contained(_file_uri_path(uri), uri)
        scheme = _SCHEME.match(uri)
        if scheme:
            raise MlsvcError(
                ErrorCode.UNSUPPORTED_URI,
                f"'{_redact(uri)}' uses scheme '{scheme.group(1)}', which mlsvc does not read or write; "
                f"use {SUPPORTED} (write a local name containing ':' as ./name)",
                {"uri": _redact(uri)},
            )
        return self._contained(Path(uri), uri)

    def _contained(self, path: Path, uri: str) -> Path:
        """The absolute, symlink-free form of ``path``, provided it lies inside a local root."""
        if "\x00" in str(path):
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"the path {uri!r} holds a NUL character", {"uri": uri})
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop on Python 3.11
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"cannot resolve the path {uri}: {exc}", {"uri": uri}) from exc
        if not self.local_roots or any(resolved.is_relative_to(root) for root in self.local_roots):
            return resolved
        roots = ", ".join(str(r) for r in self.local_roots)
        shown = f"{uri} (which resolves to {resolved})" if str(resolved) != uri else uri
        raise MlsvcError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"{shown} is outside the local data roots mlsvc may use ({roots}); move the data under one of them, "
            f"or add its folder to MLSVC_LOCAL_ROOTS (folders separated by '{os.pathsep}') and restart",
            {"uri": uri, "local_roots": [str(r) for r in self.local_roots]},
        )

    # -- S3 -----------------------------------------------------------------------------------------

    def _s3_stat(self, location: _S3Path) -> ObjectInfo:
        self._require_object_name(location)
        client = _client()
        try:
            with _s3_errors(location, "read"):
                head = client.head_object(Bucket=location.bucket, Key=location.key)
        except MlsvcError as exc:
            # HeadObject's 404 has no body, so it cannot say whether the key or the whole bucket is missing.
            if exc.details.get("missing") == "key" and not _bucket_exists(client, location.bucket):
                raise _no_bucket(location.bucket, location.uri) from exc
            if exc.code == ErrorCode.ACCESS_DENIED:
                # Nor can its 403 say why; a one-byte GetObject answers with the reason (an unknown key id,
                # a wrong secret, an expired token, a policy), and the message can then say what to fix.
                raise _denied_reason(client, location) or exc from exc
            raise
        return ObjectInfo(location.uri, int(head["ContentLength"]), _etag(head))

    @staticmethod
    def _require_object_name(location: _S3Path) -> None:
        if location.is_prefix:
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST,
                f"{location.uri} names a prefix (it ends with '/'); name one object, e.g. {location.uri}part.csv",
                {"uri": location.uri},
            )

    def _s3_list_data_files(self, location: _S3Path) -> list[ObjectInfo]:
        named = None if location.is_prefix else location
        if not location.is_prefix:
            try:
                return [self._s3_stat(location)]
            except MlsvcError as exc:
                if exc.code != ErrorCode.DATA_NOT_FOUND or exc.details.get("missing") != "key":
                    raise
            # Not an object: read it as a folder, never as a bare prefix, so "data" does not match "data2.csv".
            location = _S3Path(location.bucket, location.key + "/")
        found, seen = [], 0
        pages = (
            _client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=location.bucket, Prefix=location.key, PaginationConfig={"PageSize": self.s3_page_size})
        )
        with _s3_errors(location, "list"):
            for page in pages:
                for item in page.get("Contents", []):
                    seen += 1
                    if _is_data_file(item["Key"]):
                        uri = _S3Path(location.bucket, item["Key"]).uri
                        found.append(ObjectInfo(uri, int(item["Size"]), _etag(item)))
        if not found:
            if seen == 0 and named is not None:
                raise self._s3_no_object(named)
            _raise_nothing_found(location.uri, seen)
        return sorted(found, key=lambda info: info.uri)

    def _s3_no_object(self, location: _S3Path) -> MlsvcError:
        """A named object that is neither there nor a folder: say so, with the near names that are there."""
        parent = location.key.rsplit("/", 1)[0] + "/" if "/" in location.key else ""
        with _s3_errors(location, "list"):
            page = _client().list_objects_v2(Bucket=location.bucket, Prefix=parent, MaxKeys=1000)
        keys = [item["Key"] for item in page.get("Contents", [])]
        near = difflib.get_close_matches(location.key, keys, n=3, cutoff=0.6)
        near += [k for k in keys if k.lower() == location.key.lower() and k not in near]
        hint = f"; did you mean {', '.join(_S3Path(location.bucket, k).uri for k in near)}?" if near else ""
        return MlsvcError(
            ErrorCode.DATA_NOT_FOUND,
            f"no object at {location.uri}, and no .csv files under {location.uri}/; check the key and its case{hint}",
            {"uri": location.uri, "missing": "key", "near": [_S3Path(location.bucket, k).uri for k in near]},
        )

    def _s3_publish(self, src: _S3Path, dst: _S3Path) -> None:
        self._require_object_name(dst)
        size = self._s3_stat(src).size
        client = _client()
        source = {"Bucket": src.bucket, "Key": src.key}
        with _s3_errors(dst, "write"):
            if size <= self.s3_copy_threshold:
                client.copy_object(Bucket=dst.bucket, Key=dst.key, CopySource=source)
            else:
                # CopyObject stops at 5 GiB; the managed copy splits into UploadPartCopy calls (and sizes the
                # chunks up itself if 10,000 would not be enough).
                config = TransferConfig(multipart_threshold=self.s3_copy_threshold, multipart_chunksize=256 * MiB)
                client.copy(source, dst.bucket, dst.key, Config=config)
        with _s3_errors(src, "delete"):
            client.delete_object(Bucket=src.bucket, Key=src.key)


# -- S3 clients ---------------------------------------------------------------------------------------

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _client() -> Any:
    """This process's S3 client for the current endpoint and credentials; made on first use, then reused."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    # The pid is in the key because a forked worker must not share its parent's pooled connections; the
    # endpoint and identity are, so a changed environment (tests, a re-configured worker) gets a fresh client.
    key = (os.getpid(), endpoint, os.environ.get("AWS_PROFILE"), os.environ.get("AWS_ACCESS_KEY_ID"))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(endpoint)
        return client


def _new_client(endpoint: str | None) -> Any:
    # A session per client: boto3's default session is shared state and not safe to build clients from
    # concurrently. boto3 reads AWS_ENDPOINT_URL(_S3) itself; ``endpoint`` only picks the addressing style.
    session = boto3.session.Session()
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 10,
        "read_timeout": 120,
        "max_pool_connections": 32,
    }
    if endpoint:
        # S3-compatible stores (MinIO, Ceph, moto) rarely resolve bucket.host names; path style always works.
        options["s3"] = {"addressing_style": "path"}
    return session.client("s3", region_name=session.region_name or "us-east-1", config=Config(**options))


# -- S3 errors ----------------------------------------------------------------------------------------


@contextmanager
def _s3_errors(location: _S3Path, action: str) -> Iterator[None]:
    """Turn any boto error raised inside into an MlsvcError that says what to check."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise translate_s3_error(exc, location.uri, action) from exc


def translate_s3_error(exc: BaseException, uri: str, action: str = "read") -> MlsvcError:
    """The MlsvcError a person can act on for a boto error met while ``action``-ing ``uri``."""
    bucket = uri[len("s3://") :].split("/", 1)[0]
    details: dict[str, Any] = {"uri": uri}
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return _no_bucket(bucket, uri)
        if code in _MISSING_CODES or status == 404:
            details["missing"] = "key"
            return MlsvcError(ErrorCode.DATA_NOT_FOUND, f"no object at {uri}; check the key and its case", details)
        if code in _ACCESS_CODES or status == 403:
            return MlsvcError(ErrorCode.ACCESS_DENIED, _denied_message(code, uri, bucket, action), details)
        if code == "PreconditionFailed":
            return MlsvcError(
                ErrorCode.INVALID_DATA, f"{uri} was replaced while mlsvc was reading it; run again", details
            )
        if code == "InvalidBucketName":
            return MlsvcError(ErrorCode.UNSUPPORTED_URI, f"'{bucket}' is not a valid S3 bucket name ({uri})", details)
        message = str(error.get("Message", ""))[:200]
        return MlsvcError(
            ErrorCode.INTERNAL,
            f"S3 answered {code or status} ({message}) to the {action} of {uri}; if this persists, check the "
            "bucket's settings and the S3 service status",
            details,
        )
    if isinstance(exc, NoCredentialsError):
        return MlsvcError(
            ErrorCode.ACCESS_DENIED,
            f"no AWS credentials were found to {action} {uri}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or run with an instance/task role",
            details,
        )
    if isinstance(exc, ParamValidationError):
        return MlsvcError(ErrorCode.UNSUPPORTED_URI, f"{uri} is not a valid S3 location: {exc}", details)
    if isinstance(exc, EndpointConnectionError):
        return MlsvcError(
            ErrorCode.INTERNAL,
            f"could not connect to the S3 endpoint to {action} {uri}; check AWS_ENDPOINT_URL, the region and "
            "the network",
            details,
        )
    return MlsvcError(
        ErrorCode.INTERNAL, f"talking to S3 failed while trying to {action} {uri} ({type(exc).__name__})", details
    )


def _no_bucket(bucket: str, uri: str) -> MlsvcError:
    return MlsvcError(
        ErrorCode.DATA_NOT_FOUND,
        f"bucket '{bucket}' does not exist (looking for {uri}); check the bucket name, and AWS_ENDPOINT_URL "
        "if the data is on an S3-compatible store rather than AWS",
        {"uri": uri, "missing": "bucket"},
    )


def _denied_reason(client: Any, location: _S3Path) -> MlsvcError | None:
    try:
        client.get_object(Bucket=location.bucket, Key=location.key, Range="bytes=0-0")["Body"].close()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code"):
            return translate_s3_error(exc, location.uri, "read")
    except BotoCoreError:
        pass
    return None


def _bucket_exists(client: Any, bucket: str) -> bool:
    """False only when S3 says the bucket is not there; a denied or failed check gives the benefit of the doubt."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404
    except BotoCoreError:
        return True
    return True


def _denied_message(code: str, uri: str, bucket: str, action: str) -> str:
    hints = {
        "InvalidAccessKeyId": "the access key id is unknown to this S3 endpoint: check AWS_ACCESS_KEY_ID / "
        "AWS_PROFILE, and AWS_ENDPOINT_URL if the data is not on AWS",
        "SignatureDoesNotMatch": "the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY",
        "ExpiredToken": "the session token has expired: refresh the credentials (AWS_SESSION_TOKEN / SSO login)",
        "InvalidToken": "the session token is malformed: refresh the credentials",
    }
    hint = hints.get(
        code,
        f"the credentials mlsvc runs with (AWS_ACCESS_KEY_ID / AWS_PROFILE / instance role) lack permission to "
        f"{action} in bucket '{bucket}'; check the IAM and bucket policies",
    )
    message = f"access to {uri} was denied ({code or '403'}): {hint}"
    if action == "read" and code in ("403", "AccessDenied"):
        message += " (S3 also answers 403 for a missing object when the credentials may not list the bucket)"
    return message


# -- S3 streams ---------------------------------------------------------------------------------------


def _etag(item: dict[str, Any]) -> str | None:
    etag = item.get("ETag")
    return str(etag).strip('"') if etag else None


class _S3Reader(io.RawIOBase):
    """GetObject's body as a raw stream; a dropped connection resumes at the same byte of the same version."""

    def __init__(self, client: Any, location: _S3Path) -> None:
        super().__init__()
        self._client = client
        self._location = location
        self._position = 0
        with _s3_errors(location, "read"):
            response = client.get_object(Bucket=location.bucket, Key=location.key)
        self._size = int(response["ContentLength"])
        self._etag = response.get("ETag")
        self._body = response["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        resumes = 0
        while True:
            try:
                data = self._body.read(len(view)) if self._position < self._size else b""
            except _STREAM_ERRORS:
                data = None
            if data or self._position >= self._size:
                break
            # Fewer bytes than promised: the connection broke; ask again from here, up to a few times in a row.
            resumes += 1
            if resumes > _READ_RESUMES:
                raise MlsvcError(
                    ErrorCode.INTERNAL,
                    f"the connection to S3 kept breaking while reading {self._location.uri} "
                    f"(at byte {self._position} of {self._size}); run again",
                    {"uri": self._location.uri},
                )
            self._reopen()
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _reopen(self) -> None:
        self._body.close()
        extra = {"IfMatch": self._etag} if self._etag else {}
        with _s3_errors(self._location, "read"):
            response = self._client.get_object(
                Bucket=self._location.bucket, Key=self._location.key, Range=f"bytes={self._position}-", **extra
            )
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _Sink(Protocol):
    """Where open_write's bytes go until ``commit`` makes them visible or ``abort`` drops them."""

    @property
    def stream(self) -> BinaryIO: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class _S3Upload(io.BufferedIOBase):
    """Buffers one part in memory; small outputs become one PutObject, larger ones a multipart upload."""

    def __init__(self, client: Any, location: _S3Path, part_size: int) -> None:
        super().__init__()
        self._client = client
        self._location = location
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def stream(self) -> BinaryIO:
        return cast(BinaryIO, self)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed S3 upload")
        view = memoryview(data).cast("B")
        self._buffer += view
        if len(self._buffer) >= self._current_part_size():
            self._upload_part()
        return len(view)

    def _current_part_size(self) -> int:
        # Grow the parts every 1,000 so 10,000 parts reach ~440 GB at 8 MiB, while memory stays one part.
        return self._part_size * (1 + len(self._parts) // 1000)

    def _upload_part(self) -> None:
        with _s3_errors(self._location, "write"):
            if self._upload_id is None:
                created = self._client.create_multipart_upload(Bucket=self._location.bucket, Key=self._location.key)
                self._upload_id = created["UploadId"]
            if len(self._parts) >= _MAX_PARTS:
                raise MlsvcError(ErrorCode.INVALID_DATA, f"{self._location.uri} would exceed S3's 10,000 parts")
            number = len(self._parts) + 1
            response = self._client.upload_part(
                Bucket=self._location.bucket,
                Key=self._location.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer = bytearray()

    def commit(self) -> None:
        with _s3_errors(self._location, "write"):
            if self._upload_id is None:
                self._client.put_object(Bucket=self._location.bucket, Key=self._location.key, Body=bytes(self._buffer))
                return
            if self._buffer:
                self._upload_part()
            self._client.complete_multipart_upload(
                Bucket=self._location.bucket,
                Key=self._location.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        # The caller's error matters more than a failed abort; a bucket lifecycle rule for incomplete uploads
        # sweeps any parts left behind.
        with suppress(BotoCoreError, ClientError):
            self._client.abort_multipart_upload(
                Bucket=self._location.bucket, Key=self._location.key, UploadId=self._upload_id
            )
        self._upload_id = None


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


# -- local files --------------------------------------------------------------------------------------


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
                if _is_data_file(name):
                    file = Path(folder, name)
                    found.append(ObjectInfo(str(file), file.stat().st_size, None))
    if not found:
        _raise_nothing_found(str(path), None)
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


# -- helpers ------------------------------------------------------------------------------------------


def _parse_s3(uri: str) -> _S3Path:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "@" in bucket or ":" in bucket:
        raise MlsvcError(
            ErrorCode.UNSUPPORTED_URI,
            f"'{_redact(uri)}' is not an S3 URI mlsvc understands; write s3://bucket/key or s3://bucket/prefix/",
            {"uri": _redact(uri)},
        )
    return _S3Path(bucket, key)


def _file_uri_path(uri: str) -> Path:
    """The local path of file:///p or file://localhost/p, percent-decoded."""
    host, slash, rest = uri[len("file://") :].partition("/")
    if host not in ("", "localhost") or not slash:
        raise MlsvcError(
            ErrorCode.UNSUPPORTED_URI,
            f"'{_redact(uri)}' names a file on host '{host}'; file URIs must be local: file:///absolute/path",
            {"uri": _redact(uri)},
        )
    return Path(unquote("/" + rest))


def _redact(uri: str) -> str:
    """Drop a user:password@ part before a URI is echoed back in a message."""
    return _USERINFO.sub(r"\1***@", uri)


def _display(location: _Location) -> str:
    return location.uri if isinstance(location, _S3Path) else str(location)


def _is_data_file(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def _raise_nothing_found(uri: str, seen: int | None) -> NoReturn:
    others = f" ({seen} other objects are there)" if seen else ""
    raise MlsvcError(
        ErrorCode.DATA_NOT_FOUND,
        f"no .csv or .csv.gz files under {uri}{others}; check the path, and that the files end in .csv or .csv.gz",
        {"uri": uri},
    )
