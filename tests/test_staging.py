"""Staged outputs on local files and on S3 (moto's server over loopback HTTP): nothing under a final name before
publishing, results before the manifest, and earlier attempts' leftovers removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectStore, RoutingObjectStore
from mlsvc.objects.staging import StagedOutputs


@pytest.fixture(params=["local", "file-uri", "s3"])
def prefix(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a job's outputs go: a local folder, the same as a file:// URI, or an S3 prefix."""
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/out/batch-prediction"
    if request.param == "file-uri":
        return f"file://{tmp_path}/out/batch-prediction"
    return str(tmp_path / "out" / "batch-prediction")


@pytest.fixture
def objects() -> ObjectStore:
    return RoutingObjectStore()


def _write(objects: ObjectStore, uri: str, data: bytes) -> None:
    with objects.open_write(uri) as out:
        out.write(data)


def _read(objects: ObjectStore, uri: str) -> bytes:
    with objects.open_read(uri) as reader:
        return reader.read()


def _staged(objects: ObjectStore, prefix: str) -> list[str]:
    """Every data file left under the staging area, relative to it."""
    try:
        found = objects.list_data_files(prefix + "/.staging/")
    except MlsvcError:
        return []
    root = objects.check_uri(prefix + "/.staging")
    return sorted(info.uri[len(root) + 1 :] for info in found)


def test_outputs_appear_under_their_final_names_only_when_published(objects: ObjectStore, prefix: str) -> None:
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    finals = [f"{prefix}/result/bp-1-a.csv.gz", f"{prefix}/result/bp-1-b.csv"]
    for final, data in zip(finals, (b"a\n1\n", b"b\n2\n"), strict=True):
        _write(objects, staged.stage(final), data)
        assert not objects.exists(final)
    assert _staged(objects, prefix) == ["bp-1/attempt-1/result/bp-1-a.csv.gz", "bp-1/attempt-1/result/bp-1-b.csv"]
    manifest = f"{prefix}/bp-1.manifest"
    staged.publish(finals, manifest, b'{"done": true}')
    assert [_read(objects, f) for f in finals] == [b"a\n1\n", b"b\n2\n"]
    assert _read(objects, manifest) == b'{"done": true}'
    assert _staged(objects, prefix) == []


def test_the_manifest_is_not_written_unless_every_result_was_published(objects: ObjectStore, prefix: str) -> None:
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    written, missing = f"{prefix}/result/bp-1-a.csv.gz", f"{prefix}/result/bp-1-b.csv.gz"
    _write(objects, staged.stage(written), b"a\n")
    with pytest.raises(MlsvcError) as info:
        staged.publish([written, missing], f"{prefix}/bp-1.manifest", b"{}")
    assert info.value.code == ErrorCode.DATA_NOT_FOUND
    assert objects.exists(written) and not objects.exists(missing)
    assert not objects.exists(f"{prefix}/bp-1.manifest")


def test_a_retried_attempt_discards_what_earlier_attempts_staged_and_keeps_its_own(
    objects: ObjectStore, prefix: str
) -> None:
    final = f"{prefix}/result/bp-1-a.csv.gz"
    _write(objects, StagedOutputs(objects, prefix, "bp-1", attempt=1).stage(final), b"half")
    _write(objects, StagedOutputs(objects, prefix, "bp-2", attempt=1).stage(f"{prefix}/result/bp-2-a.csv"), b"other")
    retry = StagedOutputs(objects, prefix, "bp-1", attempt=2)
    _write(objects, retry.stage(final), b"whole")
    retry.discard_earlier_attempts()
    assert _staged(objects, prefix) == ["bp-1/attempt-2/result/bp-1-a.csv.gz", "bp-2/attempt-1/result/bp-2-a.csv"]
    retry.publish([final], f"{prefix}/bp-1.manifest", b"{}")
    assert _read(objects, final) == b"whole"
    assert _staged(objects, prefix) == ["bp-2/attempt-1/result/bp-2-a.csv"]  # another job's outputs are its own


def test_an_abandoned_attempt_removes_only_its_own_outputs(objects: ObjectStore, prefix: str) -> None:
    final = f"{prefix}/result/bp-1-a.csv.gz"
    later = StagedOutputs(objects, prefix, "bp-1", attempt=2)
    _write(objects, later.stage(final), b"the attempt that took over")
    failed = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    _write(objects, failed.stage(final), b"half")
    failed.abandon()
    assert _staged(objects, prefix) == ["bp-1/attempt-2/result/bp-1-a.csv.gz"]
    StagedOutputs(objects, prefix, "bp-9", attempt=1).abandon()  # nothing staged: nothing to do, no error


def test_only_data_files_under_the_prefix_can_be_staged(objects: ObjectStore, prefix: str) -> None:
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    with pytest.raises(ValueError, match=r"not a \.csv or \.csv\.gz under"):
        staged.stage(f"{prefix}-elsewhere/result/a.csv")
    with pytest.raises(ValueError, match=r"not a \.csv or \.csv\.gz under"):
        staged.stage(f"{prefix}/bp-1.manifest")  # the manifest is written by publish, never staged
