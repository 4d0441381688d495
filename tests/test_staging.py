"""Staged outputs on local files and on S3 (moto's server over loopback HTTP): nothing under a final name before
publishing, results before the manifest, earlier attempts' leftovers removed, and nothing left behind (temporary
files, unfinished uploads, empty folders) by a job that failed, completed, or was killed and retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects import ObjectStore, RoutingObjectStore
from mlsvc.objects.base import MiB
from mlsvc.objects.staging import StagedOutputs
from tests.rest import completed
from tests.servers import CHURN, wait_done


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


# --- nothing left behind: no temporary files, no unfinished uploads, no empty folders ---


def _leftovers(objects: ObjectStore, prefix: str, s3: Any) -> list[str]:
    """Everything under the staging folder, whatever its name, the folders themselves (local files) and unfinished
    multipart uploads (S3) included."""
    root = objects.check_uri(prefix + "/.staging")
    if root.startswith("s3://"):
        bucket, key = root.removeprefix("s3://").split("/", 1)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key + "/").get("Contents", [])
        uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key + "/").get("Uploads", [])
        return [item["Key"] for item in listed] + [f"upload of {upload['Key']}" for upload in uploads]
    folder = Path(root)
    return [str(folder)] + [str(p) for p in folder.rglob("*")] if folder.exists() else []


@pytest.fixture
def s3(request: pytest.FixtureRequest, prefix: str) -> Any:
    return request.getfixturevalue("s3_client") if prefix.startswith("s3://") else None


def _killed_writer(objects: ObjectStore, uri: str) -> None:
    """What a worker killed mid-write leaves: a sink written to (past one S3 part) and never committed or aborted."""
    sink = objects.sink(uri)
    sink.stream.write(b"x" * (5 * MiB + 1))
    sink.stream.write(b"y")
    sink.stream.close()  # the process is gone: its files are closed, and nothing else happened


def test_publishing_leaves_no_staging_folder_behind(prefix: str, s3: Any) -> None:
    objects = RoutingObjectStore(s3_part_size=5 * MiB)
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    final = f"{prefix}/result/bp-1-a.csv.gz"
    _write(objects, staged.stage(final), b"a\n1\n")
    staged.publish([final], f"{prefix}/bp-1.manifest", b"{}")
    assert _read(objects, final) == b"a\n1\n"
    assert _leftovers(objects, prefix, s3) == []


def test_a_failed_attempt_leaves_no_temporary_files_uploads_or_folders(prefix: str, s3: Any) -> None:
    objects = RoutingObjectStore(s3_part_size=5 * MiB)
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1)
    _write(objects, staged.stage(f"{prefix}/result/bp-1-a.csv.gz"), b"whole")
    _killed_writer(objects, staged.stage(f"{prefix}/result/bp-1-b.csv.gz"))
    staged.abandon()
    assert _leftovers(objects, prefix, s3) == []


def test_a_retried_attempt_removes_what_a_killed_one_was_writing(prefix: str, s3: Any) -> None:
    objects = RoutingObjectStore(s3_part_size=5 * MiB)
    final = f"{prefix}/result/bp-1-a.csv.gz"
    _killed_writer(objects, StagedOutputs(objects, prefix, "bp-1", attempt=1).stage(final))
    assert _leftovers(objects, prefix, s3)  # a temporary file, or an upload's parts
    retry = StagedOutputs(objects, prefix, "bp-1", attempt=2)
    retry.discard_earlier_attempts()
    _write(objects, retry.stage(final), b"whole")
    retry.publish([final], f"{prefix}/bp-1.manifest", b"{}")
    assert _read(objects, final) == b"whole"
    assert _leftovers(objects, prefix, s3) == []


def test_another_jobs_staging_stays_and_only_staging_areas_can_be_emptied(prefix: str, s3: Any) -> None:
    from mlsvc.objects.staging import discard_staged

    objects = RoutingObjectStore()
    other = StagedOutputs(objects, prefix, "bp-2", attempt=1)
    _write(objects, other.stage(f"{prefix}/result/bp-2-a.csv"), b"other")
    discard_staged(objects, prefix, "bp-1")  # a job that staged nothing
    assert _staged(objects, prefix) == ["bp-2/attempt-1/result/bp-2-a.csv"]
    _write(objects, f"{prefix}/result/kept.csv", b"data")
    for place in (prefix, f"{prefix}/result", f"{prefix}/.staging"):
        with pytest.raises(ValueError, match=r"not inside a '\.staging' folder"):
            objects.delete_staging(place)
    assert _read(objects, f"{prefix}/result/kept.csv") == b"data"


# --- outputs held under their final names (an S3 multipart upload completed at publish, staged files elsewhere) ---


def _key(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[1]


def _unfinished_uploads(s3: Any, uri: str) -> list[str]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])]


@pytest.mark.parametrize("size", [5, 11 * MiB + 3], ids=["one-put", "multipart"])
def test_a_held_output_is_seen_only_once_published_and_whole(prefix: str, s3: Any, size: int) -> None:
    objects = RoutingObjectStore(s3_part_size=5 * MiB)
    held_under = f"{prefix}/result/bp-1-"
    staged = StagedOutputs(objects, prefix, "bp-1", attempt=1, held_under=held_under)
    final = f"{prefix}/result/bp-1-a.csv.gz"
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    held = staged.hold(final)
    held.stream.write(data[: size // 2])
    held.stream.write(data[size // 2 :])
    held.finish()
    assert not objects.exists(final)
    if s3 is not None:  # written to its final key directly, unseen until the upload is completed: nothing to copy
        assert _staged(objects, prefix) == []
        assert _unfinished_uploads(s3, final) == ([_key(final)] if size > 5 * MiB else [])
    staged.publish([final], f"{prefix}/bp-1.manifest", b"{}")
    with objects.open_raw(final) as reader:
        assert reader.read() == data
    assert _leftovers(objects, prefix, s3) == []
    if s3 is not None:
        assert _unfinished_uploads(s3, held_under) == []


def test_a_held_output_of_a_failed_or_killed_attempt_is_dropped(prefix: str, s3: Any) -> None:
    from mlsvc.objects.staging import discard_staged

    objects = RoutingObjectStore(s3_part_size=5 * MiB)
    held_under = f"{prefix}/result/bp-1-"
    failed = StagedOutputs(objects, prefix, "bp-1", attempt=1, held_under=held_under)
    failed.hold(f"{prefix}/result/bp-1-a.csv.gz").stream.write(b"x" * (6 * MiB))
    failed.abandon()
    killed = StagedOutputs(objects, prefix, "bp-1", attempt=2, held_under=held_under)
    dead = killed.hold(f"{prefix}/result/bp-1-b.csv.gz")
    dead.stream.write(b"y" * (6 * MiB))
    dead.stream.close()  # its worker died: its files are closed, and nothing else happened
    other = StagedOutputs(objects, prefix, "bp-10", attempt=1, held_under=f"{prefix}/result/bp-10-")
    running = other.hold(f"{prefix}/result/bp-10-a.csv.gz")  # another job's, still being written
    running.stream.write(b"z" * (6 * MiB))
    if s3 is not None:
        assert _unfinished_uploads(s3, held_under) == [
            objects.check_uri(f"{prefix}/result/bp-1-b.csv.gz")[5:].split("/", 1)[1]
        ]
    discard_staged(objects, prefix, "bp-1", held_under)
    if s3 is not None:
        assert _unfinished_uploads(s3, f"{prefix}/result/") == [
            objects.check_uri(f"{prefix}/result/bp-10-a.csv.gz")[5:].split("/", 1)[1]
        ]
    assert not objects.exists(f"{prefix}/result/bp-1-a.csv.gz")
    assert not objects.exists(f"{prefix}/result/bp-1-b.csv.gz")
    with pytest.raises(ValueError, match="is not under"):
        killed.hold(f"{prefix}/result/bp-2-a.csv.gz")
    running.abort()


# --- the same through real batch prediction jobs ---


@pytest.fixture(scope="module")
def batch_model(api: httpx.Client) -> dict[str, Any]:
    ds = completed(api, "/v1/datasources", {"data_uri": str(CHURN)})
    return completed(api, "/v1/models", {"name": "staging-churn", "datasource_id": ds["id"], "time_budget_s": 3})


@pytest.fixture(params=["local", "s3"])
def output(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/out/"
    return str(tmp_path / "out")


def test_batch_jobs_that_fail_or_complete_leave_no_staging_behind(
    api: httpx.Client, batch_model: dict[str, Any], output: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    s3 = request.getfixturevalue("s3_client") if output.startswith("s3://") else None
    objects = RoutingObjectStore()
    prefix = objects.join(output, "batch-prediction")
    # Failing mid-file, after the first chunks were scored and written: one record is over the size limit.
    rows = pd.concat([pd.read_csv(CHURN, dtype=str, keep_default_na=False)] * 20, ignore_index=True)
    lines = rows.drop(columns=["churned"]).to_csv(index=False).splitlines()
    lines.insert(60_000, lines[60_000] + "x" * (2 * 1024 * 1024))
    (tmp_path / "broken.csv").write_text("\n".join(lines) + "\n")
    body = {"model": batch_model["id"], "data_uri": str(tmp_path / "broken.csv"), "output_uri": output}
    failed = api.post("/v1/batch-predictions", json=body).json()
    failed = wait_done(api, f"/v1/batch-predictions/{failed['id']}")
    assert failed["status"] == "FAILED" and "larger than the limit" in failed["message"]
    assert failed["rows_scored"] > 0  # it had written some before it failed
    assert not objects.exists(f"{prefix}/{failed['id']}.manifest")
    assert _leftovers(objects, prefix, s3) == []
    done = completed(api, "/v1/batch-predictions", {**body, "data_uri": str(CHURN)})
    assert objects.exists(f"{prefix}/{done['id']}.manifest")
    assert _leftovers(objects, prefix, s3) == []
