"""Authentication on a real `mlsvc serve` with MLSVC_API_KEY set: the key in either header lets a caller in, a
missing or wrong one is a 401 in the error shape on every route but liveness (/metrics included), and the SDK
and the CLI send the key they are given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlsvc.client import Client, UnauthenticatedError
from tests.rest import error
from tests.servers import RunningServer, run_cli, start_server, stop_server

KEY = "k3y-for-the-tests"
# A route of each router and of each method, and /metrics.
ROUTES = [
    ("GET", "/v1/datasources"),
    ("POST", "/v1/datasources"),
    ("GET", "/v1/datasources/ds-x/schema"),
    ("PATCH", "/v1/datasources/ds-x"),
    ("DELETE", "/v1/datasources/ds-x"),
    ("GET", "/v1/models/churn"),
    ("POST", "/v1/models/churn/predict"),
    ("PUT", "/v1/models/churn/aliases/production"),
    ("GET", "/v1/evaluations"),
    ("POST", "/v1/batch-predictions"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def keyed(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that requires the key (no job workers: nothing here needs a job to run)."""
    server = start_server(tmp_path_factory.mktemp("auth-home"), {"MLSVC_API_KEY": KEY}, workers=0)
    yield server
    stop_server(server)


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"Authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
    ids=["bearer", "bearer-lowercase", "x-api-key"],
)
def test_the_key_in_either_header_lets_a_caller_in(keyed: RunningServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as api:
        assert api.get("/v1/datasources").json()["items"] is not None
        metrics = api.get("/metrics")
        assert metrics.status_code == 200 and "mlsvc_http_requests_total" in metrics.text
        error(api.get("/v1/models/nope"), 404, "not_found")  # past authentication, to the route itself


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Bearer {KEY}x"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": KEY},  # the key without its scheme
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer wrong", "X-API-Key": KEY},  # a wrong bearer is not excused by the other header
    ],
    ids=["none", "wrong-bearer", "wrong-x-api-key", "longer", "shorter", "no-scheme", "basic", "wrong-and-right"],
)
def test_a_missing_or_wrong_key_is_401_on_every_route(keyed: RunningServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as api:
        for method, path in ROUTES:
            body: dict[str, str] | None = {} if method in ("POST", "PUT", "PATCH") else None
            response = api.request(method, path, json=body)
            assert "API key" in error(response, 401, "unauthenticated"), (method, path)
            assert response.headers["x-request-id"]


def test_a_valid_predict_body_still_needs_the_key(keyed: RunningServer) -> None:
    # A valid body takes predict's fast lane (mlsvc.server.models.PredictLane), which checks the key itself.
    body = {"record": {"tenure_months": 3}}
    with httpx.Client(base_url=keyed.url, timeout=30) as api:
        response = api.post("/v1/models/churn/predict", json=body)
        assert "API key" in error(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == 'Bearer realm="mlsvc"' and response.headers["x-request-id"]
        error(api.post("/v1/models/churn/predict", json=body, headers={"X-API-Key": KEY}), 404, "not_found")


def test_liveness_needs_no_key(keyed: RunningServer) -> None:
    assert httpx.get(f"{keyed.url}/healthz").json() == {"status": "ok"}


def test_a_refused_call_changes_nothing(keyed: RunningServer, tmp_path: Path) -> None:
    csv = tmp_path / "small.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    refused = httpx.post(f"{keyed.url}/v1/datasources", json={"data_uri": str(csv), "id": "not-made"})
    error(refused, 401, "unauthenticated")
    allowed = httpx.get(f"{keyed.url}/v1/datasources/not-made", headers={"X-API-Key": KEY})
    error(allowed, 404, "not_found")


def test_the_sdk_and_the_cli_send_their_key(
    keyed: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLSVC_API_KEY", raising=False)
    csv = tmp_path / "small.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    with Client(keyed.url, api_key=KEY) as client:
        made = client.datasources.create(str(csv), name="keyed")
        assert [d.id for d in client.datasources.list(name_prefix="keyed")] == [made.id]
    with Client(keyed.url) as anonymous, pytest.raises(UnauthenticatedError) as denied:
        anonymous.datasources.get(made.id)
    assert denied.value.status_code == 401 and denied.value.code == "unauthenticated"

    shown = run_cli(keyed, "datasources", "get", made.id, "--json", env={"MLSVC_API_KEY": KEY})
    assert shown.returncode == 0, shown.stderr
    assert made.id in shown.stdout
    refused = run_cli(keyed, "datasources", "get", made.id, "--json", env={"MLSVC_API_KEY": None})
    assert refused.returncode == 2 and "unauthenticated" in refused.stderr and "Traceback" not in refused.stderr


def test_the_amazon_ml_api_is_no_way_around_the_key(keyed: RunningServer) -> None:
    """With MLSVC_API_KEY set and no MLSVC_AWS_CREDENTIALS, Amazon ML's API at / takes no caller at all."""
    import boto3
    from botocore.exceptions import ClientError

    ml = boto3.client(
        "machinelearning",
        endpoint_url=keyed.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDANY",
        aws_secret_access_key="any-secret",
    )
    with pytest.raises(ClientError) as refused:
        ml.describe_data_sources()
    assert refused.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert "MLSVC_AWS_CREDENTIALS" in refused.value.response["Error"]["Message"]
