"""One contract for every object-store backend: local files and S3 (moto's server over loopback HTTP) behave
the same to the core, through the backend itself and through the router."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectStore, RoutingObjectStore
from mlsvc.objects.local import LocalObjectStore
from mlsvc.objects.s3 import S3ObjectStore
from mlsvc.security.uris import UriValidator


@dataclass
class Backend:
    """A backend under test, the root URI it may write under, and how to name a place below it."""

    store: ObjectStore
    root: str

    def uri(self, *parts: str) -> str:
        return self.store.join(self.root, *parts)


def _local(tmp_path: Path, routed: bool) -> Backend:
    store = RoutingObjectStore((tmp_path,)) if routed else LocalObjectStore(UriValidator((tmp_path,)))
    return Backend(store, str(tmp_path))


def _s3(bucket: str, routed: bool) -> Backend:
    store = RoutingObjectStore() if routed else S3ObjectStore()
    return Backend(store, f"s3://{bucket}/")


@pytest.fixture(params=["local", "local-routed", "s3", "s3-routed"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    routed = request.param.endswith("-routed")
    if request.param.startswith("s3"):
        return _s3(request.getfixturevalue("s3_bucket"), routed)
    return _local(tmp_path, routed)


def _write(backend: Backend, uri: str, data: bytes) -> None:
    with backend.store.open_write(uri) as out:
        out.write(data)


def _read(backend: Backend, uri: str) -> bytes:
    with backend.store.open_read(uri) as reader:
        return reader.read()


def _code(call: Callable[[], object]) -> ErrorCode:
    with pytest.raises(MlsvcError) as info:
        call()
    return info.value.code


def test_written_bytes_read_back_and_stat_counts_them(backend: Backend) -> None:
    uri = backend.uri("d", "a.csv")
    _write(backend, uri, b"x,y\n1,2\n")
    assert _read(backend, uri) == b"x,y\n1,2\n"
    assert backend.store.stat(uri).size == 8
    assert backend.store.exists(uri)


def test_gz_names_are_compressed_on_write_and_decompressed_on_read(backend: Backend) -> None:
    uri = backend.uri("b.csv.gz")
    _write(backend, uri, b"a\n" * 1000)
    assert _read(backend, uri) == b"a\n" * 1000
    with backend.store.open_raw(uri) as raw:
        assert gzip.decompress(raw.read()) == b"a\n" * 1000


def test_a_range_reads_just_its_bytes(backend: Backend) -> None:
    uri = backend.uri("r.csv")
    data = bytes(range(256)) * 4000  # past one read buffer
    _write(backend, uri, data)
    for start, end in [(0, len(data)), (5, 9), (100_000, 900_000), (len(data) - 3, len(data)), (7, 7)]:
        with backend.store.open_range(uri, start, end) as reader:
            assert reader.read() == data[start:end]
    with backend.store.open_range(uri, 10, 10**9) as reader:  # past the end: up to the end
        assert reader.read() == data[10:]
    assert _code(lambda: backend.store.open_range(backend.uri("missing.csv"), 0, 5)) == ErrorCode.DATA_NOT_FOUND


def test_a_failed_write_leaves_nothing_under_the_name(backend: Backend) -> None:
    uri = backend.uri("never.csv")
    with pytest.raises(RuntimeError), backend.store.open_write(uri) as out:
        out.write(b"half")
        raise RuntimeError("the writer failed")
    assert not backend.store.exists(uri)


def test_listing_finds_data_files_under_a_folder_in_key_order(backend: Backend) -> None:
    for name in ("p/2.csv", "p/1.csv.gz", "p/notes.txt", "p/sub/3.csv", "q/4.csv"):
        _write(backend, backend.uri(name), b"a\n1\n")
    found = [info.uri for info in backend.store.list_data_files(backend.uri("p") + "/")]
    assert found == [backend.uri("p", n) for n in ("1.csv.gz", "2.csv", "sub/3.csv")]


def test_listing_a_single_file_names_just_it(backend: Backend) -> None:
    _write(backend, backend.uri("one.csv"), b"a\n1\n")
    assert [i.uri for i in backend.store.list_data_files(backend.uri("one.csv"))] == [backend.uri("one.csv")]


def test_listing_where_there_is_no_data_is_data_not_found(backend: Backend) -> None:
    _write(backend, backend.uri("e", "readme.txt"), b"no data")
    assert _code(lambda: backend.store.list_data_files(backend.uri("e") + "/")) == ErrorCode.DATA_NOT_FOUND


def test_missing_objects_are_data_not_found(backend: Backend) -> None:
    uri = backend.uri("missing.csv")
    assert not backend.store.exists(uri)
    assert _code(lambda: backend.store.stat(uri)) == ErrorCode.DATA_NOT_FOUND
    assert _code(lambda: _read(backend, uri)) == ErrorCode.DATA_NOT_FOUND


def test_publish_moves_a_staged_object_to_its_final_name(backend: Backend) -> None:
    staged, final = backend.uri(".staging", "x.csv"), backend.uri("out", "x.csv")
    _write(backend, staged, b"rows\n")
    backend.store.publish(staged, final)
    assert _read(backend, final) == b"rows\n"
    assert not backend.store.exists(staged)
    backend.store.publish(final, final)  # onto itself: nothing is lost
    assert _read(backend, final) == b"rows\n"


def test_publish_replaces_what_was_there(backend: Backend) -> None:
    staged, final = backend.uri("new.csv"), backend.uri("old.csv")
    _write(backend, final, b"old\n")
    _write(backend, staged, b"new\n")
    backend.store.publish(staged, final)
    assert _read(backend, final) == b"new\n"


def test_delete_removes_and_is_idempotent(backend: Backend) -> None:
    uri = backend.uri("gone.csv")
    _write(backend, uri, b"a\n")
    backend.store.delete(uri)
    backend.store.delete(uri)
    assert not backend.store.exists(uri)


def test_read_bytes_refuses_more_than_its_limit(backend: Backend) -> None:
    uri = backend.uri("schema.json")
    _write(backend, uri, b"{}" * 100)
    assert backend.store.read_bytes(uri, 200) == b"{}" * 100
    assert _code(lambda: backend.store.read_bytes(uri, 199)) == ErrorCode.INVALID_DATA


def test_join_puts_one_separator_between_parts(backend: Backend) -> None:
    assert backend.store.join(backend.root, "/a/", "b") == backend.uri("a", "b")


def test_router_refuses_to_publish_across_backends(tmp_path: Path, s3_bucket: str) -> None:
    store = RoutingObjectStore((tmp_path,))
    local = str(tmp_path / "x.csv")
    with store.open_write(local) as out:
        out.write(b"a\n")
    code = _code(lambda: store.publish(local, f"s3://{s3_bucket}/x.csv"))
    assert code == ErrorCode.UNSUPPORTED_URI
