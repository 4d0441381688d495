"""Verification of AWS Signature Version 4 on calls to the Amazon ML API, as AWS itself answers them.

Threat: anyone who can reach the port drives the Amazon ML API (the JSON 1.1 face that boto3 and the AWS CLI
speak) as if they held a key; or a request signed by a key holder is replayed later, or altered on the way (its
body, a signed header, its query). With ``MLSVC_AWS_CREDENTIALS`` configured, the face calls ``verify`` on every
request: it rebuilds the SigV4 canonical request from what arrived, signs it with the configured secret of the
access key id the request names, and compares in constant time. A request signed more than five minutes from the
server's clock, scoped to another service or day, or whose body does not hash to what was signed, is refused.
Refusals carry the codes, messages and statuses AWS's JSON services answer, so the SDKs report them as usual.

Not covered here: presigned query-string requests (refused with a clear message), chunked ``STREAMING-*``
payloads, and temporary credentials: mlsvc issues none, so an ``X-Amz-Security-Token`` grants nothing. It is
accepted and not checked (covered by the signature when the client signed it, as botocore does); identity comes
from the access key id and its configured secret alone. ``UNSIGNED-PAYLOAD`` is accepted as the SigV4 spec allows,
which leaves that request's body unprotected: only the TLS in front of mlsvc guards it.

The face passes the request as it arrived: the path still percent-encoded (ASGI ``raw_path``), the raw query
string, the headers decoded as Latin-1 (a header sent twice joined with ','), and the body bytes. With no
credentials configured the face does not call ``verify``: the API is open (refused outright when MLSVC_API_KEY
is set), and the start-up lines say which.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_plus

SERVICE = "machinelearning"
ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
# How far a request's X-Amz-Date may be from the server's clock, either way: what AWS's JSON services answer today
# ("Signature expired: … (… - 5 min.)"); older messages said 15 min.
MAX_SKEW = timedelta(minutes=5)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ENV = "MLSVC_AWS_CREDENTIALS"

# The error codes of AWS's JSON protocol services; each comes back with HTTP 400 there (DynamoDB, Kinesis, ECS,
# Cognito and the other JSON 1.x services), where REST and query services answer 403.
INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"
MISSING = "MissingAuthenticationTokenException"
UNRECOGNIZED = "UnrecognizedClientException"
STATUS = 400

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)
TIMESTAMP = "%Y%m%dT%H%M%SZ"
_BASIC_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PARAM_SEPARATORS = re.compile(r"[\s,]+")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class SignatureRefused(Exception):
    """A request whose signature does not verify: ``code`` and ``message`` as AWS answers them (the face renders
    ``{"__type": code, "message": message}`` with ``status``). Messages never hold a secret."""

    def __init__(self, code: str, message: str, status: int = STATUS) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.message, self.status))


class Credentials(Mapping[str, str]):
    """The access keys the server accepts: access key id → secret access key. Its repr names the ids only."""

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._secrets = dict(pairs.items() if isinstance(pairs, Mapping) else pairs)

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """``AKID:SECRET,AKID2:SECRET2`` (``MLSVC_AWS_CREDENTIALS``); blank: none. A ValueError says which entry is
        wrong without echoing any secret."""
        pairs: dict[str, str] = {}
        entries = [e.strip() for e in text.split(",")]
        for number, entry in enumerate(entries, start=1):
            if not entry:
                continue  # a trailing or doubled comma is harmless
            key_id, colon, secret = (part.strip() for part in entry.partition(":"))
            where = f"{ENV}: entry {number} of {len(entries)}"
            if not colon:
                raise ValueError(f"{where} has no ':'; write ACCESS_KEY_ID:SECRET_ACCESS_KEY, entries separated by ','")
            if not _KEY_ID.match(key_id):
                raise ValueError(f"{where}: an access key id is 1 to 128 of A-Z a-z 0-9 . _ - (before the ':')")
            if not secret or any(c.isspace() for c in secret):
                raise ValueError(f"{where} ({key_id}): the secret access key after ':' is empty or has a space in it")
            if key_id in pairs:
                raise ValueError(f"{where}: access key id {key_id} is given twice")
            pairs[key_id] = secret
        return cls(pairs)

    def __getitem__(self, key_id: str) -> str:
        return self._secrets[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"Credentials({', '.join(self._secrets)}; secrets hidden)"

    def describe(self) -> str:
        """How the Amazon ML API authenticates, for the start-up lines."""
        if not self:
            return f"open: no {ENV}"
        return f"AWS SigV4 for access key id{'s' if len(self) > 1 else ''} {', '.join(self._secrets)}"


@dataclass(frozen=True)
class _Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`` header."""

    credential: str
    signed_headers: tuple[str, ...]
    signature: str


def verify(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    now: datetime,
    *,
    service: str = SERVICE,
    must_sign: tuple[str, ...] = (),
    unsigned_payload: bool = True,
) -> str:
    """The access key id that signed this request, or SignatureRefused. Checks run in AWS's order: a signature is
    present and well formed, the date is within MAX_SKEW of ``now``, the scope names this service and that date,
    the key is known, and the signature is the one its secret gives for the canonical request."""
    lowered = _lowercase(headers)
    authorization = lowered.get("authorization")
    presigned = any(p.partition("=")[0].lower() == "x-amz-algorithm" for p in query.split("&"))
    if authorization is None:
        if presigned:
            raise SignatureRefused(
                INCOMPLETE,
                "mlsvc verifies signatures in the Authorization header only; presigned query-string requests "
                "(X-Amz-Algorithm in the query) are not supported.",
            )
        raise SignatureRefused(MISSING, "Request is missing Authentication Token")
    if presigned:
        raise SignatureRefused(
            INVALID, "A request is signed in its Authorization header or in its query string, not both."
        )
    auth = _parse_authorization(authorization, has_date="x-amz-date" in lowered or "date" in lowered)
    if "host" not in auth.signed_headers and ":authority" not in auth.signed_headers:
        raise SignatureRefused(INVALID, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    for name in must_sign:  # a header that says what the request does must not be changeable by a replayer
        if name in lowered and name not in auth.signed_headers:
            raise SignatureRefused(INVALID, f"'{name}' must be a 'SignedHeader' in the AWS Authorization.")
    stamp = _timestamp(lowered)
    _check_skew(stamp, now)
    key_id, scope = _check_scope(auth.credential, stamp, service)
    secret = credentials.get(key_id)
    if secret is None:
        raise SignatureRefused(UNRECOGNIZED, "The security token included in the request is invalid.")
    payload = _payload_hash(lowered, body)
    if payload == UNSIGNED_PAYLOAD and not unsigned_payload:
        raise SignatureRefused(INVALID, "This service signs its payloads: UNSIGNED-PAYLOAD is not accepted.")
    canonical = canonical_request(method, path, query, lowered, auth.signed_headers, payload)
    expected = signature(secret, string_to_sign(stamp.strftime(TIMESTAMP), scope, canonical), scope)
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise SignatureRefused(INVALID, MISMATCH)
    if payload != UNSIGNED_PAYLOAD and not hmac.compare_digest(payload, hashlib.sha256(body).hexdigest()):
        # The signature covers the hash the client declared (X-Amz-Content-Sha256); the body must still hash to it.
        raise SignatureRefused(INVALID, "The provided 'x-amz-content-sha256' header does not match what was computed.")
    return key_id


def _lowercase(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lowercased; two spellings of one name joined with ',' as a repeated header is."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    return lowered


def _parse_authorization(header: str, has_date: bool) -> _Authorization:
    """The Authorization header's three parameters, or IncompleteSignatureException as AWS words it."""
    text = header.strip()
    algorithm, _, rest = text.partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRefused(INCOMPLETE, f"Unsupported AWS 'algorithm': '{algorithm}'.")
    params: dict[str, str] = {}
    # AWS splits the parameters at commas and at spaces: "Credential= AKID/…" names 'AKID/…' as the bad pair.
    for param in _PARAM_SEPARATORS.split(rest):
        if not param:
            continue
        name, equals, value = param.partition("=")
        if not equals:
            raise SignatureRefused(
                INCOMPLETE,
                f"'{param}' not a valid key=value pair (missing equal-sign) in Authorization header: '{text}'.",
            )
        params[name] = value  # the last of a repeated parameter wins, as at AWS
    required = ("Credential", "Signature", "SignedHeaders")
    missing = [f"Authorization header requires '{name}' parameter." for name in required if not params.get(name)]
    if not has_date:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise SignatureRefused(INCOMPLETE, f"{' '.join(missing)} Authorization={algorithm}")
    names = sorted(n.strip().lower() for n in params["SignedHeaders"].split(";"))
    return _Authorization(params["Credential"], tuple(names), params["Signature"])


def _timestamp(headers: Mapping[str, str]) -> datetime:
    """When the request was signed: X-Amz-Date (ISO 8601 basic), else the Date header (that form or HTTP's)."""
    value = headers.get("x-amz-date")
    if value is None:
        value = headers["date"]
        try:
            # botocore, given a Date header, sends it in HTTP's form and signs its ISO 8601 basic form.
            # "-0000" (what botocore writes) parses without a zone: it means UTC.
            parsed = parsedate_to_datetime(value.strip())
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    value = value.strip()
    try:
        if _BASIC_DATE.match(value):
            return datetime.strptime(value, TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        pass
    raise SignatureRefused(
        INCOMPLETE, f"Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _check_skew(stamp: datetime, now: datetime) -> None:
    """Refuse a request signed more than MAX_SKEW before or after the server's clock (a replay, or a bad clock)."""
    now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    minutes = int(MAX_SKEW.total_seconds() // 60)
    if stamp < now - MAX_SKEW:
        raise SignatureRefused(
            INVALID,
            f"Signature expired: {stamp:{TIMESTAMP}} is now earlier than {now - MAX_SKEW:{TIMESTAMP}} "
            f"({now:{TIMESTAMP}} - {minutes} min.)",
        )
    if stamp > now + MAX_SKEW:
        raise SignatureRefused(
            INVALID,
            f"Signature not yet current: {stamp:{TIMESTAMP}} is still later than {now + MAX_SKEW:{TIMESTAMP}} "
            f"({now:{TIMESTAMP}} + {minutes} min.)",
        )


def _check_scope(credential: str, stamp: datetime, service: str) -> tuple[str, str]:
    """The access key id and the credential scope (date/region/service/aws4_request), checked against the request's
    date and this service; any non-empty region is accepted."""
    parts = credential.split("/")
    if len(parts) != 5:
        raise SignatureRefused(
            INCOMPLETE,
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{credential}'",
        )
    key_id, date, region, scoped_service, terminator = parts
    problems = []
    if not region:
        problems.append("Credential should be scoped to a valid region.")
    if scoped_service != service:
        problems.append(f"Credential should be scoped to correct service: '{service}'.")
    if terminator != TERMINATOR:
        problems.append(f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'.")
    if date != f"{stamp:%Y%m%d}":
        problems.append(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{date}' != '{stamp:%Y%m%d}', from '{stamp:{TIMESTAMP}}'."
        )
    if problems:
        raise SignatureRefused(INVALID, " ".join(problems))
    return key_id, "/".join(parts[1:])


def _payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The payload line of the canonical request: X-Amz-Content-Sha256 when sent, else the body's SHA-256."""
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        return hashlib.sha256(body).hexdigest()
    declared = declared.strip()
    if declared == UNSIGNED_PAYLOAD or _HEX_SHA256.match(declared):
        return declared
    raise SignatureRefused(
        INCOMPLETE,
        f"x-amz-content-sha256 must be the lowercase hex SHA-256 of the body or {UNSIGNED_PAYLOAD}; "
        f"'{declared[:80]}' is not supported here (no chunked STREAMING-* payloads).",
    )


def canonical_path(path: str) -> str:
    """The path as the SigV4 spec has it for services other than S3 (and as botocore signs it): dot segments and
    empty segments removed, then every byte but unreserved ones and '/' percent-encoded again ('%' becomes '%25')."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(query: str) -> str:
    """Each name and value decoded then encoded as the spec requires (unreserved characters kept), sorted by name
    then value; a name without '=' has an empty value. A '+' on the wire is a space: that is how HTTP clients
    (botocore's included) send the space botocore signs as '%20'."""
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote_plus(name), safe="-_.~"), quote(unquote_plus(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], signed_headers: Iterable[str], payload_hash: str
) -> str:
    """The SigV4 canonical request; ``headers`` keyed by lowercase name. A signed header absent from the request
    gets no line (and so cannot match what the client signed)."""
    names = list(signed_headers)
    # Trimall: values trimmed, runs of whitespace collapsed to one space; each line ends with a newline.
    block = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names if name in headers)
    return "\n".join(
        [method.upper(), canonical_path(path), canonical_query(query), block, ";".join(names), payload_hash]
    )


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def signature(secret: str, to_sign: str, scope: str) -> str:
    """HMAC-SHA256 of the string to sign under the key derived from the secret through the scope's date, region
    and service."""
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
