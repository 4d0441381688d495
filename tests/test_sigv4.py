"""SigV4 verification: requests signed by botocore's own signer pass; each tampering is refused as AWS answers it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from mlsvc.config import Settings
from mlsvc.security.sigv4 import (
    INCOMPLETE,
    INVALID,
    MISMATCH,
    MISSING,
    UNRECOGNIZED,
    Credentials,
    SignatureRefused,
    verify,
)

KEY_ID = "AKIAMLSVCTEST0001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDENTIALS = Credentials({KEY_ID: SECRET, "AKIAOTHER": "another/secret+key"})
URL = "http://127.0.0.1:8080/"
TARGET = "AmazonML_20141212.DescribeMLModels"
BODY = json.dumps({"FilterVariable": "Name", "EQ": "churn", "Limit": 10}).encode()


class Signed:
    """A request as the server receives it: method, raw path, raw query, headers, body."""

    def __init__(self, request: AWSRequest) -> None:
        parts = urlsplit(request.url)
        self.method = request.method
        self.path = parts.path or "/"
        self.query = parts.query
        self.headers = dict(request.headers.items())
        # botocore leaves Host to the HTTP client, which sends what the URL names; it signs the same.
        self.headers.setdefault("Host", parts.netloc)
        body = request.body or b""
        self.body = body.encode() if isinstance(body, str) else body

    @property
    def when(self) -> datetime:
        stamp = self.headers.get("X-Amz-Date")
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if stamp else datetime.now(UTC)

    def verify(self, now: datetime | None = None, credentials: Credentials = CREDENTIALS, **kw: str) -> str:
        return verify(self.method, self.path, self.query, self.headers, self.body, credentials, now or self.when, **kw)


def sign(
    body: bytes = BODY,
    url: str = URL,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    secret: str = SECRET,
    key_id: str = KEY_ID,
    token: str | None = None,
    service: str = "machinelearning",
    region: str = "us-east-1",
    params: dict[str, str] | None = None,
) -> Signed:
    """Sign as boto3 does for the Amazon ML API (JSON 1.1: POST /, X-Amz-Target), with botocore's own signer."""
    base = {"X-Amz-Target": TARGET, "Content-Type": "application/x-amz-json-1.1"}
    request = AWSRequest(method=method, url=url, data=body, headers={**base, **(headers or {})}, params=params)
    SigV4Auth(BotoCredentials(key_id, secret, token), service, region).add_auth(request)
    if params:
        request.url = request.prepare().url  # the query string as it goes on the wire
        request.params = {}
    return Signed(request)


def refused(signed: Signed, now: datetime | None = None, **kw: str) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as caught:
        signed.verify(now, **kw)
    assert caught.value.status == 400  # JSON protocol services answer every signature refusal with 400
    return caught.value


# --- what passes ---


def test_a_describe_call_as_boto3_signs_it() -> None:
    assert sign().verify() == KEY_ID


def test_any_region_and_the_second_key() -> None:
    assert sign(region="eu-west-1", key_id="AKIAOTHER", secret="another/secret+key").verify() == "AKIAOTHER"


def test_a_query_string() -> None:
    signed = sign(params={"b": "2", "a": "x y/z", "Zeta": "é", "empty": ""})
    assert signed.query
    assert signed.verify() == KEY_ID


def test_a_query_in_the_url_sorted_by_the_signer() -> None:
    assert sign(url=URL + "?b=2&a=1&a=0").verify() == KEY_ID


def test_a_session_token_is_accepted_and_signed() -> None:
    signed = sign(token="FQoGZXIvYXdzEXAMPLETOKEN")
    assert "x-amz-security-token" in signed.headers["Authorization"]
    assert signed.verify() == KEY_ID


def test_odd_header_spacing_is_collapsed() -> None:
    signed = sign(headers={"X-Custom": "  a   b \t c  ", "X-Other": "x"})
    assert signed.verify() == KEY_ID
    # The wire may carry the same value with other runs of spaces: trimall makes them one.
    signed.headers["X-Custom"] = "a b    c"
    assert signed.verify() == KEY_ID


def test_header_names_in_any_case() -> None:
    signed = sign()
    signed.headers = {name.upper(): value for name, value in signed.headers.items()}
    assert signed.verify() == KEY_ID


def test_a_non_ascii_body() -> None:
    body = json.dumps({"Name": "churn – café 数据"}, ensure_ascii=False).encode("utf-8")
    assert sign(body=body).verify() == KEY_ID


def test_an_empty_body() -> None:
    assert sign(body=b"", method="GET").verify() == KEY_ID


def test_a_declared_payload_hash_and_unsigned_payload() -> None:
    import hashlib

    assert sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()}).verify() == KEY_ID
    assert sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}).verify() == KEY_ID


def test_a_date_header_instead_of_x_amz_date() -> None:
    signed = sign(headers={"Date": "Thu, 01 Jan 2015 00:00:00 GMT"})  # botocore rewrites it to the signing time
    assert "X-Amz-Date" not in signed.headers
    assert signed.verify(now=datetime.now(UTC)) == KEY_ID


def test_a_path_with_escapes_and_dot_segments() -> None:
    assert sign(url="http://127.0.0.1:8080/a%20b/./c//d/../e~f").verify() == KEY_ID


def test_within_the_skew() -> None:
    signed = sign()
    assert signed.verify(now=signed.when + timedelta(minutes=4, seconds=59)) == KEY_ID
    assert signed.verify(now=signed.when - timedelta(minutes=5)) == KEY_ID


def test_the_boto3_client_itself() -> None:
    """What the unmodified boto3 client sends, caught at its public before-send event (nothing leaves the process)."""
    import boto3
    from botocore.awsrequest import AWSResponse

    sent: list[AWSRequest] = []

    class Empty:
        def stream(self, **_: object) -> object:
            yield b"{}"

    def catch(request: AWSRequest, **_: object) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, Empty())

    client = boto3.client(
        "machinelearning",
        endpoint_url="http://127.0.0.1:8080/",
        region_name="us-west-2",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token="a-session-token",
    )
    client.meta.events.register("before-send.machinelearning", catch)
    client.describe_ml_models(FilterVariable="Name", EQ="churn")
    (request,) = sent
    signed = Signed(request)
    signed.headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in signed.headers.items()}
    assert signed.headers["X-Amz-Target"] == TARGET
    assert signed.verify() == KEY_ID


# --- what is refused ---


def test_wrong_secret() -> None:
    error = refused(sign(secret="not-the-secret"))
    assert (error.code, error.message) == (INVALID, MISMATCH)


def test_unknown_key_id() -> None:
    error = refused(sign(key_id="AKIAUNKNOWN"))
    assert (error.code, error.message) == (UNRECOGNIZED, "The security token included in the request is invalid.")


def test_no_credentials_configured_refuses_every_key() -> None:
    assert refused(sign(), credentials=Credentials()).code == UNRECOGNIZED


def test_body_changed() -> None:
    signed = sign()
    signed.body = BODY.replace(b"churn", b"fraud")
    assert (refused(signed).code, refused(signed).message) == (INVALID, MISMATCH)


def test_body_changed_under_a_declared_hash() -> None:
    import hashlib

    signed = sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    signed.body = b"{}"
    error = refused(signed)
    assert error.code == INVALID and "x-amz-content-sha256" in error.message


def test_a_signed_header_changed() -> None:
    signed = sign()
    signed.headers["X-Amz-Target"] = "AmazonML_20141212.DeleteMLModel"
    assert refused(signed).message == MISMATCH


def test_a_signed_header_removed() -> None:
    signed = sign()
    del signed.headers["X-Amz-Target"]
    assert refused(signed).message == MISMATCH


def test_the_query_changed() -> None:
    signed = sign(params={"a": "1"})
    signed.query = "a=2"
    assert refused(signed).message == MISMATCH


def test_missing_authorization() -> None:
    signed = sign()
    del signed.headers["Authorization"]
    error = refused(signed)
    assert (error.code, error.message) == (MISSING, "Request is missing Authentication Token")


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        ("Bearer abc", "Unsupported AWS 'algorithm': 'Bearer'."),
        ("AWS4-HMAC-SHA256", "Authorization header requires 'Credential' parameter."),
        ("AWS4-HMAC-SHA256 Credential=x, Signature=y", "requires 'SignedHeaders' parameter. Authorization=AWS4"),
        (
            "AWS4-HMAC-SHA256 Credential= AKIA/20150830/us-east-1/machinelearning/aws4_request, SignedHeaders=host, "
            "Signature=y",
            "'AKIA/20150830/us-east-1/machinelearning/aws4_request' not a valid key=value pair (missing equal-sign)",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIA/20150830/us-east-1, SignedHeaders=host;x-amz-date, Signature=y",
            "Credential must have exactly 5 slash-delimited elements",
        ),
    ],
)
def test_malformed_authorization(authorization: str, says: str) -> None:
    signed = sign()
    signed.headers["Authorization"] = authorization
    error = refused(signed)
    assert error.code == INCOMPLETE and says in error.message


def test_host_must_be_signed() -> None:
    signed = sign()
    signed.headers["Authorization"] = signed.headers["Authorization"].replace("host;", "")
    error = refused(signed)
    assert error.code == INVALID and "'Host' or ':authority' must be a 'SignedHeader'" in error.message


def test_no_date() -> None:
    signed = sign()
    del signed.headers["X-Amz-Date"]
    error = refused(signed, now=datetime.now(UTC))
    assert error.code == INCOMPLETE and "either a 'X-Amz-Date' or a 'Date' header" in error.message


def test_a_date_not_in_basic_format() -> None:
    signed = sign()
    signed.headers["X-Amz-Date"] = "2015-08-30T12:36:00Z"
    error = refused(signed, now=datetime.now(UTC))
    assert error.code == INCOMPLETE and "Date must be in ISO-8601 'basic format'" in error.message


def test_expired() -> None:
    signed = sign()
    now = signed.when + timedelta(minutes=6)
    error = refused(signed, now=now)
    stamp = signed.headers["X-Amz-Date"]
    earliest = (now - timedelta(minutes=5)).strftime("%Y%m%dT%H%M%SZ")
    assert error.code == INVALID
    assert error.message == (
        f"Signature expired: {stamp} is now earlier than {earliest} ({now:%Y%m%dT%H%M%SZ} - 5 min.)"
    )


def test_not_yet_current() -> None:
    signed = sign()
    error = refused(signed, now=signed.when - timedelta(minutes=6))
    assert error.code == INVALID and error.message.startswith("Signature not yet current: ")
    assert error.message.endswith(" + 5 min.)")


def test_wrong_service_in_scope() -> None:
    error = refused(sign(service="dynamodb"))
    assert (error.code, error.message) == (
        INVALID,
        "Credential should be scoped to correct service: 'machinelearning'.",
    )


def test_scope_date_is_not_the_request_date() -> None:
    signed = sign()
    next_day = signed.when + timedelta(days=1)
    signed.headers["X-Amz-Date"] = f"{next_day:%Y%m%dT%H%M%SZ}"
    error = refused(signed, now=next_day)
    assert error.code == INVALID
    assert error.message.startswith("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date")


def test_presigned_query_auth_is_refused_clearly() -> None:
    signed = sign()
    del signed.headers["Authorization"]
    signed.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=y"
    error = refused(signed)
    assert error.code == INCOMPLETE and "presigned query-string requests" in error.message


def test_chunked_payloads_are_refused() -> None:
    signed = sign(headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    assert "no chunked STREAMING-* payloads" in refused(signed).message


def test_a_refusal_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(SignatureRefused(INVALID, MISMATCH, 400)))
    assert (error.code, error.message, error.status) == (INVALID, MISMATCH, 400)


# --- the AWS SigV4 test suite (aws-sig-v4-test-suite, 2015-08-30), reproduced from its published vectors ---

SUITE = Credentials({"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"})
SUITE_NOW = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SUITE_SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


@pytest.mark.parametrize(
    ("name", "method", "query", "extra", "body", "signed_headers", "signature"),
    [
        (
            "get-vanilla",
            "GET",
            "",
            {},
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "Param2=value2&Param1=value1",
            {},
            b"",
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST",
            "",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
    ],
)
def test_aws_suite_vectors(
    name: str, method: str, query: str, extra: dict[str, str], body: bytes, signed_headers: str, signature: str
) -> None:
    headers = {
        "Host": "example.amazonaws.com",
        "X-Amz-Date": "20150830T123600Z",
        **extra,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, SignedHeaders={signed_headers}, "
        f"Signature={signature}",
    }
    assert verify(method, "/", query, headers, body, SUITE, SUITE_NOW, service="service") == "AKIDEXAMPLE", name
    headers["Authorization"] = headers["Authorization"][:-1] + ("0" if signature[-1] != "0" else "1")
    with pytest.raises(SignatureRefused):
        verify(method, "/", query, headers, body, SUITE, SUITE_NOW, service="service")


# --- the setting ---


def test_credentials_from_the_environment_keep_secrets_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSVC_AWS_CREDENTIALS", f" {KEY_ID}:{SECRET} , AKIAOTHER:another/secret+key,")
    settings = Settings.from_env()
    assert dict(settings.aws_credentials) == {KEY_ID: SECRET, "AKIAOTHER": "another/secret+key"}
    for text in (repr(settings), repr(settings.aws_credentials), settings.describe("a test")):
        assert SECRET not in text and "another/secret" not in text
    assert f"AWS SigV4 for access key ids {KEY_ID}, AKIAOTHER" in settings.describe("a test")


def test_no_credentials_leaves_the_api_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSVC_AWS_CREDENTIALS", raising=False)
    settings = Settings.from_env()
    assert not settings.aws_credentials
    assert "amazon ml api    open: no MLSVC_AWS_CREDENTIALS" in settings.describe("a test")
    monkeypatch.setenv("MLSVC_API_KEY", "a-key")
    assert "amazon ml api    refused: MLSVC_API_KEY is set" in Settings.from_env().describe("a test")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("AKIAONLY", "entry 1 of 1 has no ':'"),
        ("AKIA:one,:two", "entry 2 of 2: an access key id is"),
        ("AKIA/X:secret", "an access key id is"),
        ("AKIA:", "(AKIA): the secret access key after ':' is empty"),
        ("AKIA:se cret", "has a space in it"),
        ("AKIA:one,AKIA:two", "access key id AKIA is given twice"),
    ],
)
def test_a_malformed_setting_is_a_clear_startup_error(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="MLSVC_AWS_CREDENTIALS") as caught:
        Credentials.parse(text)
    assert says in str(caught.value)
    for secret in ("one", "two", "se cret"):  # the message names the entry, never what it holds after ':'
        assert f"{secret}" not in str(caught.value).replace("of ", "")
