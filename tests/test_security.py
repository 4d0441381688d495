"""The security room's pure parts: the URI validator, API-key checks and artifact digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.security.auth import check_api_key, presented_key
from mlsvc.security.integrity import file_digest, mismatches, tree_digests
from mlsvc.security.uris import S3Location, UriValidator, redact


def test_validator_parses_s3_and_contains_local_paths(tmp_path: Path) -> None:
    validator = UriValidator((tmp_path,))
    assert validator.parse("s3://b/k/x.csv") == S3Location("b", "k/x.csv")
    assert validator.parse(str(tmp_path / "a" / ".." / "b.csv")) == tmp_path / "b.csv"
    with pytest.raises(MlsvcError) as info:
        validator.parse(str(tmp_path / ".." / "outside.csv"))
    assert info.value.code == ErrorCode.PATH_NOT_ALLOWED


def test_validator_refuses_a_symlink_that_leads_out(tmp_path: Path) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "link").symlink_to(outside)
    with pytest.raises(MlsvcError) as info:
        UriValidator((inside,)).check(str(inside / "link" / "x.csv"))
    assert info.value.code == ErrorCode.PATH_NOT_ALLOWED


@pytest.mark.parametrize("uri", ["http://169.254.169.254/latest", "ftp://h/x.csv", "file://otherhost/etc/passwd"])
def test_validator_refuses_other_schemes_and_hosts(uri: str) -> None:
    with pytest.raises(MlsvcError) as info:
        UriValidator(()).check(uri)
    assert info.value.code == ErrorCode.UNSUPPORTED_URI


def test_redact_hides_credentials() -> None:
    assert redact("s3://AKIA:secret@bucket/k") == "s3://***@bucket/k"


def test_api_key_from_either_header() -> None:
    assert presented_key("Bearer k1", None) == "k1"
    assert presented_key("bearer k1", "k2") == "k1"
    assert presented_key(None, "k2") == "k2"
    check_api_key("k2", None, "k2")
    check_api_key(None, None, None)  # no key configured: everyone is let in


@pytest.mark.parametrize(("authorization", "x_api_key"), [(None, None), ("Bearer wrong", None), (None, "k")])
def test_api_key_refused(authorization: str | None, x_api_key: str | None) -> None:
    with pytest.raises(MlsvcError) as info:
        check_api_key("right", authorization, x_api_key)
    assert info.value.code == ErrorCode.UNAUTHENTICATED


def test_digests_name_every_changed_missing_or_added_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.pkl").write_bytes(b"model")
    (tmp_path / "sub" / "MLmodel").write_bytes(b"meta")
    recorded = tree_digests(tmp_path)
    assert recorded == {
        "model.pkl": hashlib.sha256(b"model").hexdigest(),
        "sub/MLmodel": hashlib.sha256(b"meta").hexdigest(),
    }
    assert file_digest(tmp_path / "model.pkl") == recorded["model.pkl"]
    assert mismatches(recorded, tree_digests(tmp_path)) == []
    (tmp_path / "model.pkl").write_bytes(b"tampered")
    (tmp_path / "sub" / "MLmodel").unlink()
    (tmp_path / "extra.py").write_bytes(b"import os")
    assert mismatches(recorded, tree_digests(tmp_path)) == ["extra.py", "model.pkl", "sub/MLmodel"]


def test_a_binary_file_is_named_not_quoted(tmp_path: Path) -> None:
    from mlsvc.datasources.reader import peek_rows

    secret = b"SQLite format 3\x00\x10\x00\x01\x01\x00@  \x00\x00\xff\xfe token=hunter2 \x00\x00"
    with pytest.raises(MlsvcError) as info:
        peek_rows(secret * 20, limit=10, source="x.csv")
    assert info.value.code == ErrorCode.INVALID_DATA
    assert "binary file" in info.value.message
    assert "hunter2" not in info.value.message and "SQLite" not in info.value.message
