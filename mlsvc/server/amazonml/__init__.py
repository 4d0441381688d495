"""Amazon Machine Learning's own API (JSON 1.1, ``X-Amz-Target: AmazonML_20141212.*``, SigV4) at ``POST /`` on the
REST API's port: the face that lets the unmodified boto3 client and AWS CLI drive mlsvc's service layer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from botocore.model import OperationModel
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mlsvc.config import Settings
from mlsvc.errors import MlsvcError
from mlsvc.security.sigv4 import SignatureRefused, verify
from mlsvc.server.amazonml import batch_predictions, datasources, evaluations, models, tags
from mlsvc.server.amazonml.common import OPERATIONS, Call, translated
from mlsvc.server.amazonml.protocol import CONTENT_TYPE, AmazonError, operation, parse_input, render_output

log = logging.getLogger("mlsvc.amazonml")
FACES = (batch_predictions, datasources, evaluations, models, tags)  # each registers its operations on import


def install(app: FastAPI, settings: Settings) -> None:
    """Serve Amazon ML's operations at ``POST /``."""
    missing = sorted(set(_operation_names()) - set(OPERATIONS))
    assert not missing, f"Amazon ML operations without a handler: {missing}"

    @app.post("/", include_in_schema=False)
    async def amazon_ml(request: Request) -> Response:
        body = await request.body()
        request_id = request.scope.get("state", {}).get("request_id", "")
        try:
            key = _authenticated(request, body, settings)
            op = operation(request.headers.get("x-amz-target"))
            params = parse_input(op, body)
            call = Call(request.app.state.service, settings.public_url or _base_url(request), key)
            answer = await run_in_threadpool(_run, op.name, call, params)
            return Response(_rendered(op, answer), media_type=CONTENT_TYPE, headers=_ids(request_id))
        except AmazonError as error:
            return _error(error, request_id)


def _operation_names() -> list[str]:
    from mlsvc.server.amazonml.protocol import service_model

    return list(service_model().operation_names)


def _run(name: str, call: Call, params: dict[str, object]) -> dict[str, object]:
    try:
        return OPERATIONS[name](call, params)
    except MlsvcError as error:
        raise translated(error) from error
    except AmazonError:
        raise
    except Exception as exc:  # a bug: the caller gets Amazon's fault, the log gets the traceback
        log.exception("Amazon ML %s failed", name)
        raise AmazonError("InternalServerException", f"{name} failed inside mlsvc; see the server's log") from exc


def _rendered(op: OperationModel, answer: dict[str, object]) -> bytes:
    try:
        return render_output(op, answer)
    except Exception as exc:  # an answer the model does not declare is a bug of this face: never sent
        log.exception("Amazon ML %s: the answer does not fit its output shape", op.name)
        raise AmazonError("InternalServerException", f"{op.name} failed inside mlsvc; see the server's log") from exc


def _authenticated(request: Request, body: bytes, settings: Settings) -> str | None:
    """The verified access key id; None when the API is open (no credentials and no API key configured)."""
    credentials = settings.aws_credentials
    if not credentials:
        if settings.api_key:  # the native API wants a key: this face must not be the way around it
            raise AmazonError(
                "MissingAuthenticationTokenException",
                "this server requires authentication: sign requests with a key set in MLSVC_AWS_CREDENTIALS",
            )
        return None
    try:
        return verify(
            request.method,
            request.scope.get("raw_path", b"/").decode("latin-1") or "/",
            request.scope.get("query_string", b"").decode("latin-1"),
            dict(request.headers),
            body,
            credentials,
            datetime.now(UTC),
            # What a request does is in its target and its body: both signed, so a captured signature cannot be
            # replayed as another operation or with another body.
            must_sign=("x-amz-target",),
            unsigned_payload=False,
        )
    except SignatureRefused as refused:
        raise AmazonError(refused.code, refused.message, refused.status) from refused


def _base_url(request: Request) -> str:
    """This server's URL as the caller reached it: where its real-time endpoints are."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _ids(request_id: str) -> dict[str, str]:
    return {"x-amzn-RequestId": request_id} if request_id else {}


def _error(error: AmazonError, request_id: str) -> Response:
    headers = {**_ids(request_id), "x-amzn-ErrorType": error.code}
    return Response(error.body(), status_code=error.status, media_type=CONTENT_TYPE, headers=headers)
