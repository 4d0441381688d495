"""The object store against a real S3 protocol server on loopback and real local files."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectInfo, RoutingObjectStore
from mlsvc.objects import s3 as s3_module
from mlsvc.objects.s3 import translate_s3_error
from tests.s3server import s3_auth_enforced

MiB = 1024 * 1024


def _blocks(total: int, block: int = MiB) -> Iterator[bytes]:
    """Deterministic, poorly compressible bytes, a block at a time."""
    for i in range(0, total, block):
        yield hashlib.sha256(str(i).encode()).digest() * (min(block, total - i) // 32)


@contextmanager
def _raises(code: ErrorCode, *fragments: str) -> Iterator[None]:
    """Expect an MlsvcError with ``code`` whose message contains every fragment."""
    with pytest.raises(MlsvcError) as info:
        yield
    assert info.value.code == code, info.value.message
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


@pytest.fixture
def storage() -> RoutingObjectStore:
    return RoutingObjectStore()


def _put(s3_client: Any, bucket: str, key: str, body: bytes) -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)


# -- URIs ---------------------------------------------------------------------------------------------


def test_check_uri_normalizes(storage: RoutingObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.check_uri("s3://bucket/some/key.csv") == "s3://bucket/some/key.csv"
    assert storage.check_uri("s3://bucket") == "s3://bucket/"
    assert storage.check_uri("data/x.csv") == str(tmp_path / "data" / "x.csv")
    assert storage.check_uri("file://" + str(tmp_path) + "/a%20b/c.csv") == str(tmp_path / "a b" / "c.csv")
    assert storage.check_uri("file://localhost" + str(tmp_path) + "/c.csv") == str(tmp_path / "c.csv")


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/x.csv", "https://host/x.csv", "ftp://host/x.csv", "gs://bucket/x.csv", "s3a://b/k", "s3:/b/k"],
)
def test_unsupported_schemes(storage: RoutingObjectStore, uri: str) -> None:
    with _raises(ErrorCode.UNSUPPORTED_URI, "s3://bucket/key", "file://"):
        storage.check_uri(uri)


def test_unsupported_uri_message_hides_passwords(storage: RoutingObjectStore) -> None:
    with pytest.raises(MlsvcError) as info:
        storage.check_uri("https://alice:hunter2@example.com/x.csv")
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "file://otherhost/x.csv"])
def test_malformed_uris(storage: RoutingObjectStore, uri: str) -> None:
    with _raises(ErrorCode.UNSUPPORTED_URI):
        storage.check_uri(uri)


def test_join() -> None:
    storage = RoutingObjectStore()
    assert storage.join("s3://b/out/", "/run-1/", "part.csv") == "s3://b/out/run-1/part.csv"
    assert storage.join("s3://b", "k") == "s3://b/k"
    assert storage.join("/data/out", "a", "b.csv") == "/data/out/a/b.csv"
    assert storage.join("file:///data/out/", "a b.csv") == "file:///data/out/a%20b.csv"


# -- local roots --------------------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inside, outside = tmp_path / "root", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    return inside, outside


def test_paths_inside_roots_are_allowed(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    storage = RoutingObjectStore((inside,))
    assert storage.check_uri(str(inside / "sub" / "x.csv")) == str(inside / "sub" / "x.csv")
    assert storage.check_uri((inside / "x y.csv").as_uri()) == str(inside / "x y.csv")
    assert storage.check_uri(str(inside / "sub" / ".." / "x.csv")) == str(inside / "x.csv")


def test_paths_outside_roots_are_refused(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (inside / "link.csv").symlink_to(outside / "secret.csv")
    (inside / "linkdir").symlink_to(outside)
    storage = RoutingObjectStore((inside,))
    escapes = [
        str(outside / "secret.csv"),
        str(inside / ".." / "elsewhere" / "secret.csv"),
        "file://" + str(inside) + "/%2E%2E/elsewhere/secret.csv",
        str(inside / "link.csv"),
        str(inside / "linkdir" / "secret.csv"),
    ]
    for uri in escapes:
        with _raises(ErrorCode.PATH_NOT_ALLOWED, str(inside), "MLSVC_LOCAL_ROOTS"):
            storage.check_uri(uri)
        with _raises(ErrorCode.PATH_NOT_ALLOWED):
            storage.open_read(uri)


def test_listing_refuses_a_symlink_out_of_the_roots(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (inside / "ok.csv").write_text("a\n1\n")
    (inside / "leak.csv").symlink_to(outside / "secret.csv")
    with _raises(ErrorCode.PATH_NOT_ALLOWED, "leak.csv"):
        RoutingObjectStore((inside,)).list_data_files(str(inside))


def test_no_roots_means_any_local_path(roots: tuple[Path, Path]) -> None:
    _, outside = roots
    assert RoutingObjectStore().read_bytes(str(outside / "secret.csv"), 100) == b"a\n1\n"


# -- local files --------------------------------------------------------------------------------------


def test_local_listing(storage: RoutingObjectStore, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b" / "c.csv.gz").write_bytes(gzip.compress(b"x\n2\n"))
    (tmp_path / "b" / "notes.txt").write_text("skip me")
    (tmp_path / "README.md").write_text("skip me")
    files = storage.list_data_files(str(tmp_path))
    assert files == [
        ObjectInfo(str(tmp_path / "a.csv"), 4, None),
        ObjectInfo(str(tmp_path / "b" / "c.csv.gz"), (tmp_path / "b" / "c.csv.gz").stat().st_size, None),
    ]
    assert storage.list_data_files(str(tmp_path / "b" / "notes.txt"))[0].size == 7


def test_local_listing_finds_nothing(storage: RoutingObjectStore, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no csv here")
    with _raises(ErrorCode.DATA_NOT_FOUND, str(tmp_path)):
        storage.list_data_files(str(tmp_path))
    with _raises(ErrorCode.DATA_NOT_FOUND, "missing"):
        storage.list_data_files(str(tmp_path / "missing"))


def test_local_errors_are_translated(storage: RoutingObjectStore, tmp_path: Path) -> None:
    with _raises(ErrorCode.DATA_NOT_FOUND, "nope.csv"):
        storage.open_read(str(tmp_path / "nope.csv"))
    with _raises(ErrorCode.INVALID_REQUEST, "directory"):
        storage.open_read(str(tmp_path))
    locked = tmp_path / "locked.csv"
    locked.write_text("a\n")
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as a user who can read any file")
    with _raises(ErrorCode.ACCESS_DENIED, "permissions"):
        storage.open_read(str(locked))


def test_local_gzip_is_decompressed(storage: RoutingObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with storage.open_read(str(path)) as reader:
        assert reader.read() == b"a,b\n1,2\n"


def test_local_corrupt_gzip_fails_when_read(storage: RoutingObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"a,b\n1,2\n")
    truncated = tmp_path / "cut.csv.gz"
    whole = gzip.compress(b"".join(_blocks(MiB)))
    truncated.write_bytes(whole[: len(whole) // 2])
    for uri in (str(path), str(truncated)):
        reader = storage.open_read(uri)
        with _raises(ErrorCode.INVALID_DATA, "is not a valid gzip file", uri):
            reader.read()
        reader.close()


def test_read_bytes_limit(storage: RoutingObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_bytes(b"x" * 100)
    assert storage.read_bytes(str(path), 100) == b"x" * 100
    with _raises(ErrorCode.INVALID_DATA, "larger than 99 bytes"):
        storage.read_bytes(str(path), 99)


def test_local_write_is_atomic(storage: RoutingObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.csv"
    with storage.open_write(str(target)) as writer:
        writer.write(b"a\n1\n")
        assert not target.exists()  # nothing under the final name until the end
    assert target.read_bytes() == b"a\n1\n"

    with pytest.raises(RuntimeError), storage.open_write(str(target)) as writer:
        writer.write(b"half a result")
        raise RuntimeError("the job failed")
    assert target.read_bytes() == b"a\n1\n"  # the earlier result survives a failed rewrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.csv"]  # and no temporary file is left


def test_local_write_survives_the_caller_closing_the_stream(storage: RoutingObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    with storage.open_write(str(target)) as writer:
        text = io.TextIOWrapper(writer, encoding="utf-8")
        text.write("héllo\n")
        text.close()  # closes the writer underneath, as pandas' and csv's wrappers may do
    assert target.read_text(encoding="utf-8") == "héllo\n"


def test_local_gzip_write_round_trips(storage: RoutingObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "t.csv.gz"
    with storage.open_write(str(target)) as writer:
        writer.write(b"a\n1\n")
    assert gzip.decompress(target.read_bytes()) == b"a\n1\n"
    assert storage.read_bytes(str(target), 10) == b"a\n1\n"


def test_local_publish_stat_exists_delete(storage: RoutingObjectStore, tmp_path: Path) -> None:
    temp, final = tmp_path / "_tmp" / "part.csv", tmp_path / "final" / "part.csv"
    with storage.open_write(str(temp)) as writer:
        writer.write(b"abc")
    storage.publish(str(temp), str(final))
    assert not storage.exists(str(temp))
    assert storage.stat(str(final)) == ObjectInfo(str(final), 3, None)
    storage.delete(str(final))
    storage.delete(str(final))  # already gone: no error
    assert not storage.exists(str(final))
    assert not storage.exists(str(tmp_path))  # a directory is not a file


# -- S3 -----------------------------------------------------------------------------------------------


def test_client_uses_the_endpoint_from_the_environment(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = s3_module.client()
    assert client.meta.endpoint_url == s3_server
    assert s3_module.client() is client  # cached
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert s3_module.client().meta.endpoint_url == "http://127.0.0.1:9"


def test_s3_write_goes_over_http(storage: RoutingObjectStore, s3_server: str, s3_client: Any, s3_bucket: str) -> None:
    with storage.open_write(f"s3://{s3_bucket}/hello.csv") as writer:
        writer.write(b"a\n1\n")
    # Read it back with nothing but urllib (through a presigned URL): the bytes really are on the server.
    url = s3_client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "hello.csv"})
    assert url.startswith(s3_server)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"a\n1\n"


def test_s3_single_object(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    _put(s3_client, s3_bucket, "d/one.csv", b"a,b\n1,2\n")
    uri = f"s3://{s3_bucket}/d/one.csv"
    [info] = storage.list_data_files(uri)
    assert (info.uri, info.size) == (uri, 8)
    assert info.etag == hashlib.md5(b"a,b\n1,2\n").hexdigest()
    assert storage.stat(uri) == info
    assert storage.exists(uri)
    with storage.open_read(uri) as reader:
        assert reader.read(4) == b"a,b\n"
        assert reader.read() == b"1,2\n"
    assert storage.read_bytes(uri, 100) == b"a,b\n1,2\n"


def test_s3_prefix_listing(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    keys = ["data/a.csv", "data/b.csv.gz", "data/sub/c.csv", "data/notes.txt", "data/sub/", "data2/x.csv"]
    for key in keys:
        _put(s3_client, s3_bucket, key, b"" if key.endswith("/") else b"x\n1\n")
    want = [f"s3://{s3_bucket}/data/{name}" for name in ("a.csv", "b.csv.gz", "sub/c.csv")]
    assert [f.uri for f in storage.list_data_files(f"s3://{s3_bucket}/data/")] == want
    assert [f.uri for f in storage.list_data_files(f"s3://{s3_bucket}/data")] == want  # a folder, not "data*"
    assert len(storage.list_data_files(f"s3://{s3_bucket}")) == 4


def test_s3_listing_pages(s3_client: Any, s3_bucket: str) -> None:
    for i in range(7):
        _put(s3_client, s3_bucket, f"p/{i}.csv", b"x\n")
    pages: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        pages.append(parsed.get("KeyCount", 0))

    events = s3_module.client().meta.events
    events.register("after-call.s3.ListObjectsV2", count)
    try:
        files = RoutingObjectStore(s3_page_size=2).list_data_files(f"s3://{s3_bucket}/p/")
    finally:
        events.unregister("after-call.s3.ListObjectsV2", count)
    assert [f.uri.rsplit("/", 1)[1] for f in files] == [f"{i}.csv" for i in range(7)]
    assert pages == [2, 2, 2, 1]


def test_s3_nothing_found(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    _put(s3_client, s3_bucket, "docs/readme.md", b"hi")
    with _raises(ErrorCode.DATA_NOT_FOUND, f"s3://{s3_bucket}/docs/", "1 other objects"):
        storage.list_data_files(f"s3://{s3_bucket}/docs/")
    with _raises(ErrorCode.DATA_NOT_FOUND, f"s3://{s3_bucket}/none"):
        storage.list_data_files(f"s3://{s3_bucket}/none")


def test_s3_missing_bucket_and_key(storage: RoutingObjectStore, s3_bucket: str) -> None:
    missing = "mlsvc-test-no-such-bucket"
    for call in (storage.list_data_files, storage.stat, storage.open_read):
        with _raises(ErrorCode.DATA_NOT_FOUND, f"bucket '{missing}' does not exist"):
            call(f"s3://{missing}/x.csv")
    with _raises(ErrorCode.DATA_NOT_FOUND, "bucket"):
        storage.list_data_files(f"s3://{missing}/")
    for call in (storage.stat, storage.open_read):
        with _raises(ErrorCode.DATA_NOT_FOUND, f"no object at s3://{s3_bucket}/x.csv"):
            call(f"s3://{s3_bucket}/x.csv")
    assert not storage.exists(f"s3://{s3_bucket}/x.csv")


def test_s3_access_denied_for_unknown_credentials(storage: RoutingObjectStore, s3_server: str, s3_bucket: str) -> None:
    with s3_auth_enforced(s3_server):
        with _raises(ErrorCode.ACCESS_DENIED, "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"):
            storage.list_data_files(f"s3://{s3_bucket}/")
        with _raises(ErrorCode.ACCESS_DENIED, s3_bucket):
            storage.stat(f"s3://{s3_bucket}/x.csv")


@pytest.mark.parametrize("code", ["AccessDenied", "SignatureDoesNotMatch", "ExpiredToken"])
def test_access_denied_translation(code: str) -> None:
    error = ClientError(
        {"Error": {"Code": code, "Message": "denied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"
    )
    translated = translate_s3_error(error, "s3://bkt/k.csv", "read")
    assert translated.code == ErrorCode.ACCESS_DENIED
    assert code in translated.message
    assert "s3://bkt/k.csv" in translated.message
    assert translated.http_status == 403


def test_s3_gzip(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    plain = b"".join(_blocks(3 * MiB))
    _put(s3_client, s3_bucket, "z/data.csv.gz", gzip.compress(plain, compresslevel=1))
    _put(s3_client, s3_bucket, "z/bad.csv.gz", b"a,b\n1,2\n")
    with storage.open_read(f"s3://{s3_bucket}/z/data.csv.gz") as reader:
        assert hashlib.sha256(reader.read()).digest() == hashlib.sha256(plain).digest()
    reader = storage.open_read(f"s3://{s3_bucket}/z/bad.csv.gz")
    with _raises(ErrorCode.INVALID_DATA, "is not a valid gzip file", "bad.csv.gz"):
        reader.read(10)
    reader.close()


def test_s3_read_resumes_after_a_dropped_connection(
    storage: RoutingObjectStore, s3_client: Any, s3_bucket: str
) -> None:
    data = b"".join(_blocks(3 * MiB))
    _put(s3_client, s3_bucket, "big.csv", data)
    with storage.open_read(f"s3://{s3_bucket}/big.csv") as reader:
        head = reader.read(MiB + 7)
        reader.raw._body.close()  # type: ignore[attr-defined]  # the connection drops mid-stream
        rest = reader.read()
    assert head + rest == data


def test_s3_multipart_write(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/out/big.csv"
    digest = hashlib.sha256()
    with storage.open_write(uri) as writer:
        for block in _blocks(20 * MiB):
            digest.update(block)
            writer.write(block)
    head = s3_client.head_object(Bucket=s3_bucket, Key="out/big.csv")
    assert head["ContentLength"] == 20 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # 8 + 8 + 4 MiB: a multipart upload, not one PUT
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    with storage.open_read(uri) as reader:
        back = hashlib.sha256()
        while block := reader.read(MiB):
            back.update(block)
    assert back.digest() == digest.digest()


def test_s3_failed_write_leaves_nothing(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/out/big.csv"
    with pytest.raises(RuntimeError), storage.open_write(uri) as writer:
        for block in _blocks(10 * MiB):  # past the first part, so an upload is under way
            writer.write(block)
        raise RuntimeError("the job failed")
    assert not storage.exists(uri)
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_s3_part_that_fails_in_the_background_fails_the_write(
    storage: RoutingObjectStore, s3_client: Any, s3_bucket: str
) -> None:
    """Parts go up in a thread of their own; one that S3 refuses still fails the write, in the writer's thread."""
    uri = f"s3://{s3_bucket}/out/big.csv"
    with pytest.raises(MlsvcError), storage.open_write(uri) as writer:
        blocks = _blocks(40 * MiB)
        for block in itertools.islice(blocks, 9):  # past the first part: an upload is under way
            writer.write(block)
        (upload,) = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        s3_client.abort_multipart_upload(Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for block in blocks:  # the parts after this are refused (no such upload)
            writer.write(block)
    assert not storage.exists(uri)
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_s3_small_gzip_write(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/small.csv.gz"
    with storage.open_write(uri) as writer:
        writer.write(b"a\n1\n")
    stored = s3_client.get_object(Bucket=s3_bucket, Key="small.csv.gz")
    assert "-" not in stored["ETag"]  # one PutObject
    assert gzip.decompress(stored["Body"].read()) == b"a\n1\n"
    assert storage.read_bytes(uri, 100) == b"a\n1\n"


@pytest.mark.parametrize("threshold", [5 * 1024 * MiB, 5 * MiB], ids=["copy_object", "managed_copy"])
def test_s3_publish(s3_client: Any, s3_bucket: str, threshold: int) -> None:
    storage = RoutingObjectStore(s3_copy_threshold=threshold)
    data = b"".join(_blocks(12 * MiB))
    temp, final = f"s3://{s3_bucket}/_tmp/run/part.csv", f"s3://{s3_bucket}/out/part.csv"
    with storage.open_write(temp) as writer:
        writer.write(data)
    storage.publish(temp, final)
    assert not storage.exists(temp)
    assert storage.stat(final).size == len(data)
    assert s3_client.get_object(Bucket=s3_bucket, Key="out/part.csv")["Body"].read() == data


def test_s3_delete(storage: RoutingObjectStore, s3_client: Any, s3_bucket: str) -> None:
    _put(s3_client, s3_bucket, "k.csv", b"x")
    storage.delete(f"s3://{s3_bucket}/k.csv")
    storage.delete(f"s3://{s3_bucket}/k.csv")
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    with _raises(ErrorCode.INVALID_REQUEST, "prefix"):
        storage.delete(f"s3://{s3_bucket}/dir/")
