"""Pytest plugin: an S3 protocol server (moto's server mode) on loopback, spoken to over real HTTP."""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the server on a free port, point the AWS environment at it for the session, yield its URL."""
    # werkzeug logs every request to stderr, which buries the output of a failing test.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # Nothing from the developer's own AWS set-up may leak in, or redirect the tests to real AWS.
        env.setenv("AWS_CONFIG_FILE", str(empty))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
            env.delenv(name, raising=False)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """A plain boto3 client on the test server, for arranging and checking objects behind the code's back."""
    return boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket of its own for one test; emptied and removed afterwards."""
    name = f"mlsvc-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for upload in s3_client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3_client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=item["Key"])
    s3_client.delete_bucket(Bucket=name)


@contextmanager
def s3_auth_enforced(endpoint: str) -> Iterator[None]:
    """Make the server check credentials (it accepts any by default), so real 403s can be provoked."""
    _set_auth(endpoint, "0")
    try:
        yield
    finally:
        _set_auth(endpoint, "inf")


def _set_auth(endpoint: str, free_requests: str) -> None:
    # moto's control endpoint: how many requests go unauthenticated before credentials are checked.
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=free_requests.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
