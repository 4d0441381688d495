"""The object store on S3 and S3-compatible stores: streamed reads that resume, multipart writes, copies."""

from __future__ import annotations

import difflib
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, cast

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
from mlsvc.objects.base import (
    READ_BUFFER,
    Held,
    MiB,
    ObjectInfo,
    ObjectStore,
    Sink,
    is_data_file,
    raise_nothing_found,
)
from mlsvc.security.uris import S3Location, UriValidator

# S3's limits: CopyObject handles at most 5 GiB, an upload has at most 10,000 parts, parts but the last >= 5 MiB.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB
_MAX_PARTS = 10_000
# Parts being sent while the writer fills the next one: memory stays (1 + this) parts.
PARTS_IN_FLIGHT = 2
_READ_RESUMES = 3
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


class S3ObjectStore(ObjectStore):
    """Objects in S3 buckets, through this process's boto3 client for the configured endpoint."""

    def __init__(
        self,
        *,
        page_size: int = 1000,
        part_size: int = 8 * MiB,
        copy_threshold: int = COPY_OBJECT_LIMIT,
        validator: UriValidator | None = None,
    ) -> None:
        self.validator = validator or UriValidator()
        self.page_size = page_size
        self.part_size = max(part_size, 5 * MiB)  # S3 refuses smaller parts (all but the last)
        self.copy_threshold = min(copy_threshold, COPY_OBJECT_LIMIT)  # CopyObject cannot do more

    def check_uri(self, uri: str) -> str:
        return self._parse(uri).uri

    def _parse(self, uri: str) -> S3Location:
        location = self.validator.parse(uri)
        if not isinstance(location, S3Location):
            raise MlsvcError(ErrorCode.UNSUPPORTED_URI, f"{uri} is not an s3:// URI", {"uri": uri})
        return location

    def list_data_files(self, uri: str) -> list[ObjectInfo]:
        location = self._parse(uri)
        named = None if location.is_prefix else location
        if not location.is_prefix:
            try:
                return [self._stat(location)]
            except MlsvcError as exc:
                if exc.code != ErrorCode.DATA_NOT_FOUND or exc.details.get("missing") != "key":
                    raise
            # Not an object: read it as a folder, never as a bare prefix, so "data" does not match "data2.csv".
            location = S3Location(location.bucket, location.key + "/")
        found, seen = [], 0
        pages = (
            client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=location.bucket, Prefix=location.key, PaginationConfig={"PageSize": self.page_size})
        )
        with _s3_errors(location, "list"):
            for page in pages:
                for item in page.get("Contents", []):
                    seen += 1
                    place = S3Location(location.bucket, item["Key"])
                    # mlsvc's own artifacts under the prefix (an artifact root inside the data bucket) are not data.
                    if is_data_file(item["Key"]) and not self.validator.is_own(place):
                        found.append(ObjectInfo(place.uri, int(item["Size"]), _etag(item)))
        if not found:
            if seen == 0 and named is not None:
                raise _no_object(named)
            raise_nothing_found(location.uri, seen)
        return sorted(found, key=lambda info: info.uri)

    def stat(self, uri: str) -> ObjectInfo:
        return self._stat(self._parse(uri))

    def _stat(self, location: S3Location) -> ObjectInfo:
        _require_object_name(location)
        s3 = client()
        try:
            with _s3_errors(location, "read"):
                head = s3.head_object(Bucket=location.bucket, Key=location.key)
        except MlsvcError as exc:
            # HeadObject's 404 has no body, so it cannot say whether the key or the whole bucket is missing.
            if exc.details.get("missing") == "key" and not _bucket_exists(s3, location.bucket):
                raise _no_bucket(location.bucket, location.uri) from exc
            if exc.code == ErrorCode.ACCESS_DENIED:
                # Nor can its 403 say why; a one-byte GetObject answers with the reason (an unknown key id,
                # a wrong secret, an expired token, a policy), and the message can then say what to fix.
                raise _denied_reason(s3, location) or exc from exc
            raise
        return ObjectInfo(location.uri, int(head["ContentLength"]), _etag(head))

    def open_raw(self, uri: str) -> BinaryIO:
        location = self._parse(uri)
        _require_object_name(location)
        return cast(BinaryIO, io.BufferedReader(_S3Reader(client(), location), READ_BUFFER))

    def open_range(self, uri: str, start: int, end: int) -> BinaryIO:
        location = self._parse(uri)
        _require_object_name(location)
        return cast(BinaryIO, io.BufferedReader(_S3Reader(client(), location, start, end), READ_BUFFER))

    def sink(self, uri: str) -> Sink:
        location = self._parse(uri)
        _require_object_name(location)
        return _S3Upload(client(), location, self.part_size)

    def hold(self, final_uri: str, staged_uri: str) -> Held:
        """A multipart upload to the final key, completed at publish: nothing is copied (a CopyObject of the
        whole output took 0.3-0.5 s of a 10 s job), and until then the key shows nothing. An output smaller than
        one part is kept in memory and put at publish."""
        location = self._parse(final_uri)
        _require_object_name(location)
        return _S3Upload(client(), location, self.part_size)

    def abort_unfinished(self, uri: str) -> None:
        location = self._parse(uri)
        s3 = client()
        with _s3_errors(location, "delete"):
            self._abort_uploads(s3, location, location.key, lambda key: True)

    def _abort_uploads(self, s3: Any, location: S3Location, prefix: str, doomed: Callable[[str], bool]) -> None:
        """Abort the unfinished multipart uploads to keys under ``prefix`` that ``doomed`` names."""
        uploads = s3.get_paginator("list_multipart_uploads").paginate(Bucket=location.bucket, Prefix=prefix)
        for page in uploads:
            for upload in page.get("Uploads", []):
                if doomed(upload["Key"]):
                    with suppress(ClientError):  # finished or aborted meanwhile
                        s3.abort_multipart_upload(
                            Bucket=location.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )

    def publish(self, src_uri: str, dst_uri: str) -> None:
        src, dst = self._parse(src_uri), self._parse(dst_uri)
        if src == dst:
            return  # moving onto itself: the delete after the copy would lose the object
        _require_object_name(dst)
        size = self._stat(src).size
        s3 = client()
        source = {"Bucket": src.bucket, "Key": src.key}
        with _s3_errors(dst, "write"):
            if size <= self.copy_threshold:
                s3.copy_object(Bucket=dst.bucket, Key=dst.key, CopySource=source)
            else:
                # CopyObject stops at 5 GiB; the managed copy splits into UploadPartCopy calls (and sizes the
                # chunks up itself if 10,000 would not be enough).
                config = TransferConfig(multipart_threshold=self.copy_threshold, multipart_chunksize=256 * MiB)
                s3.copy(source, dst.bucket, dst.key, Config=config)
        with _s3_errors(src, "delete"):
            s3.delete_object(Bucket=src.bucket, Key=src.key)

    def delete(self, uri: str) -> None:
        location = self._parse(uri)
        _require_object_name(location)
        with _s3_errors(location, "delete"):
            client().delete_object(Bucket=location.bucket, Key=location.key)

    def _delete_tree(self, uri: str, keep: str | None) -> None:
        location = self._parse(uri)
        prefix = location.key.rstrip("/") + "/"
        kept = self._parse(keep).key.rstrip("/") + "/" if keep is not None else None

        def doomed(key: str) -> bool:
            return kept is None or not key.startswith(kept)

        s3 = client()
        with _s3_errors(location, "delete"):
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix)
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", []) if doomed(item["Key"])]
                if keys:  # a page holds at most 1,000 keys, as many as one DeleteObjects takes
                    answer = s3.delete_objects(Bucket=location.bucket, Delete={"Objects": keys, "Quiet": True})
                    if answer.get("Errors"):
                        error = answer["Errors"][0]
                        raise ClientError({"Error": error}, "DeleteObjects")
            # A writer killed mid-upload leaves its parts, unseen by a listing but stored (and paid for).
            self._abort_uploads(s3, location, prefix, doomed)


def _require_object_name(location: S3Location) -> None:
    if location.is_prefix:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"{location.uri} names a prefix (it ends with '/'); name one object, e.g. {location.uri}part.csv",
            {"uri": location.uri},
        )


def _no_object(location: S3Location) -> MlsvcError:
    """A named object that is neither there nor a folder: say so, with the near names that are there."""
    parent = location.key.rsplit("/", 1)[0] + "/" if "/" in location.key else ""
    with _s3_errors(location, "list"):
        page = client().list_objects_v2(Bucket=location.bucket, Prefix=parent, MaxKeys=1000)
    keys = [item["Key"] for item in page.get("Contents", [])]
    near = difflib.get_close_matches(location.key, keys, n=3, cutoff=0.6)
    near += [k for k in keys if k.lower() == location.key.lower() and k not in near]
    hint = f"; did you mean {', '.join(S3Location(location.bucket, k).uri for k in near)}?" if near else ""
    return MlsvcError(
        ErrorCode.DATA_NOT_FOUND,
        f"no object at {location.uri}, and no .csv files under {location.uri}/; check the key and its case{hint}",
        {"uri": location.uri, "missing": "key", "near": [S3Location(location.bucket, k).uri for k in near]},
    )


# -- S3 clients ---------------------------------------------------------------------------------------

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def client() -> Any:
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
def _s3_errors(location: S3Location, action: str) -> Iterator[None]:
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


def _denied_reason(client: Any, location: S3Location) -> MlsvcError | None:
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


# -- S3 streams ---------------------------------------------------------------------------------------


def _etag(item: dict[str, Any]) -> str | None:
    etag = item.get("ETag")
    return str(etag).strip('"') if etag else None


class _S3Reader(io.RawIOBase):
    """GetObject's body as a raw stream; a dropped connection resumes at the same byte of the same version."""

    def __init__(self, client: Any, location: S3Location, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        self._client = client
        self._location = location
        self._start, self._end = start, end
        self._position = 0
        self._etag: str | None = None
        self._size = 0
        if end is not None and end <= start:  # an empty range: S3 would refuse it as unsatisfiable
            self._body: Any = io.BytesIO()
            return
        with _s3_errors(location, "read"):
            response = client.get_object(Bucket=location.bucket, Key=location.key, **self._range(start))
        self._size = int(response["ContentLength"])
        self._etag = response.get("ETag")
        self._body = response["Body"]

    def _range(self, offset: int) -> dict[str, str]:
        """GetObject's Range from ``offset`` to the end of this reader's range (none for a whole object)."""
        if offset == 0 and self._end is None:
            return {}
        last = "" if self._end is None else str(self._end - 1)
        return {"Range": f"bytes={offset}-{last}"}

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        resumes = 0
        data: bytes | None
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
        assert data is not None  # the loop ends on data or at the end, where data is b""
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _reopen(self) -> None:
        self._body.close()
        extra = {"IfMatch": self._etag} if self._etag else {}
        with _s3_errors(self._location, "read"):
            response = self._client.get_object(
                Bucket=self._location.bucket,
                Key=self._location.key,
                **self._range(self._start + self._position),
                **extra,
            )
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _S3Upload(io.BufferedIOBase):
    """Buffers one part in memory; small outputs become one PutObject, larger ones a multipart upload whose parts
    go up in a thread of their own (at most ``PARTS_IN_FLIGHT`` at a time), so that the writer (a batch job's
    reading thread) does not wait for each part's round trip."""

    def __init__(self, client: Any, location: S3Location, part_size: int) -> None:
        super().__init__()
        self._client = client
        self._location = location
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._done: list[dict[str, Any]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._published = False

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
            self._send_part()
        return len(view)

    @property
    def _parts(self) -> int:
        """Parts sent so far (done or on their way)."""
        return len(self._done) + len(self._in_flight)

    def _current_part_size(self) -> int:
        # Grow the parts every 1,000 so 10,000 parts reach ~440 GB at 8 MiB, while memory stays a few parts.
        return self._part_size * (1 + self._parts // 1000)

    def _send_part(self) -> None:
        if self._upload_id is None:
            with _s3_errors(self._location, "write"):
                created = self._client.create_multipart_upload(Bucket=self._location.bucket, Key=self._location.key)
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-upload")
        if self._parts >= _MAX_PARTS:
            raise MlsvcError(ErrorCode.INVALID_DATA, f"{self._location.uri} would exceed S3's 10,000 parts")
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._done.append(self._in_flight.popleft().result())  # raises the part's error here, in the writer
        assert self._pool is not None
        self._in_flight.append(self._pool.submit(self._upload_part, self._parts + 1, bytes(self._buffer)))
        self._buffer = bytearray()

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        with _s3_errors(self._location, "write"):
            response = self._client.upload_part(
                Bucket=self._location.bucket,
                Key=self._location.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def commit(self) -> None:
        self.finish()
        self.publish()

    def finish(self) -> None:
        """Every part stored (an output smaller than one part stays in memory for ``publish``)."""
        if self._upload_id is None:
            return
        if self._buffer:
            self._send_part()
        while self._in_flight:
            self._done.append(self._in_flight.popleft().result())

    def publish(self) -> None:
        """The object appears under its key: the upload completed, or a small output put whole."""
        if self._published:
            return
        self._published = True
        if self._upload_id is None:
            with _s3_errors(self._location, "write"):
                self._client.put_object(Bucket=self._location.bucket, Key=self._location.key, Body=bytes(self._buffer))
            self._buffer = bytearray()
            return
        self.finish()
        with _s3_errors(self._location, "write"):
            self._client.complete_multipart_upload(
                Bucket=self._location.bucket,
                Key=self._location.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._done},
            )
        self._upload_id = None
        self._stop_pool()

    def abort(self) -> None:
        self._buffer = bytearray()
        for future in self._in_flight:
            future.cancel()
        self._stop_pool()  # waits for a part being sent, so that the abort below removes it too
        self._in_flight.clear()
        if self._upload_id is None:
            return
        # The caller's error matters more than a failed abort; a bucket lifecycle rule for incomplete uploads
        # sweeps any parts left behind.
        with suppress(BotoCoreError, ClientError):
            self._client.abort_multipart_upload(
                Bucket=self._location.bucket, Key=self._location.key, UploadId=self._upload_id
            )
        self._upload_id = None

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
