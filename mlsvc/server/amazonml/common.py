"""What the Amazon ML operations share: the call's context, the table of operations, mlsvc's errors in Amazon's
terms, and the members every resource shape carries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Resource
from mlsvc.server.amazonml.protocol import AmazonError, invalid
from mlsvc.service import ListQuery, Service

Params = dict[str, Any]
Answer = dict[str, Any]

# Amazon ML named the caller that made each resource; mlsvc keeps no IAM users, so every resource is the
# account root's (its account number is a placeholder of twelve zeros).
CREATED_BY = "arn:aws:iam::000000000000:root"


@dataclass(frozen=True)
class Call:
    """One request: the service, the URL this server was reached at (real-time endpoints name it), and the
    verified access key id (None when the API is open)."""

    service: Service
    base_url: str
    access_key: str | None


Operation = Callable[[Call, Params], Answer]
OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    """Registers the function that serves Amazon ML operation ``name``."""

    def register(fn: Operation) -> Operation:
        OPERATIONS[name] = fn
        return fn

    return register


# The FilterVariables every Describe* shares, by what every resource carries.
COMMON_VARIABLES: dict[str, Callable[[Any], Any]] = {
    "CreatedAt": lambda r: r.created_at,
    "LastUpdatedAt": lambda r: r.updated_at,
    "Status": lambda r: r.status.value,
    "Name": lambda r: r.name,
    "IAMUser": lambda r: CREATED_BY,
}


def translated(error: MlsvcError) -> AmazonError:
    """mlsvc's error as the exception Amazon ML documented for it."""
    if error.code == ErrorCode.NOT_FOUND:
        return AmazonError("ResourceNotFoundException", error.message)
    if error.code == ErrorCode.CONFLICT and "already exists with different parameters" in error.message:
        return AmazonError("IdempotentParameterMismatchException", error.message)
    if error.http_status >= 500:
        return AmazonError("InternalServerException", error.message)
    return invalid(error.message)


def request_of(shape: type[Any], fields: dict[str, Any]) -> Any:
    """A native request built from Amazon's members; what pydantic refuses is the caller's bad input."""
    try:
        return shape.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
        raise invalid(problems) from exc


def json_member(params: Params, member: str) -> Any:
    """A member Amazon passes as a JSON document inside a string (schemas, rearrangements, recipes)."""
    text = params.get(member)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"{member} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise invalid(f"{member} nests deeper than a JSON document of this service may") from exc


def life(resource: Resource) -> Answer:
    """The members of every Amazon ML resource: status, message, who made it and when, and the job's times."""
    compute = None
    if resource.started_at is not None and resource.finished_at is not None:
        compute = max(0, int((resource.finished_at - resource.started_at).total_seconds() * 1000))
    return {
        "CreatedByIamUser": CREATED_BY,
        "CreatedAt": resource.created_at,
        "LastUpdatedAt": resource.updated_at,
        "Status": resource.status.value,
        "Message": resource.message or None,
        "ComputeTime": compute,
        "StartedAt": resource.started_at,
        "FinishedAt": resource.finished_at,
    }


def log_uri(call: Call, path: str) -> str:
    """Where the resource's record can be read in full: the native API's view of it (mlsvc keeps no log files
    per resource; its jobs log to the server's log)."""
    return f"{call.base_url.rstrip('/')}{path}"


def every(page: Callable[[ListQuery], tuple[list[Any], str | None]], status: str | None = None) -> Iterator[Any]:
    """Every resource of a collection, a page at a time."""
    token: str | None = None
    while True:
        items, token = page(ListQuery(status=status, limit=100, next_token=token))
        yield from items
        if token is None:
            return


def epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()
