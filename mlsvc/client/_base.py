"""What Client and AsyncClient share: configuration, request building, the retry policy, error mapping,
pages, the waiter and each resource's calls. Nothing here does I/O; `client.py` and `async_client.py`
only send the calls built here and sleep between attempts and polls."""

from __future__ import annotations

import email.utils
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from mlsvc.client.errors import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    ResourceFailedError,
    WaitTimeoutError,
    from_response,
)
from mlsvc.resources import (
    BatchPrediction,
    DataSource,
    Evaluation,
    Model,
    PredictResponse,
    Resource,
    Schema,
    SqlSource,
    Status,
)

if TYPE_CHECKING:
    from mlsvc.client._progress import WaitDisplay

T = TypeVar("T")
R = TypeVar("R", bound=Resource)
ProgressCallback = Callable[[Any], None]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5
REQUEST_ID_HEADER = "X-Request-Id"


def _version() -> str:
    try:
        return metadata.version("mlsvc")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


USER_AGENT = f"mlsvc-python/{_version()}"


# --- one call ---


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical API call: what to send, and how to read a successful answer.

    A call is sent once, or several times when the retry policy says so; every attempt carries the
    same request id and the same body (so a create carries the same resource id)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, Any] | None = None


def new_request_id() -> str:
    return f"req-{secrets.token_hex(8)}"


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise APIResponseError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON: {response.text[:200]!r}"
        ) from exc


def parse_as(cls: type[T]) -> Callable[[httpx.Response], T]:
    """A parser that validates the JSON answer as ``cls`` (one of the types of ``mlsvc.resources``)."""

    def parse(response: httpx.Response) -> T:
        try:
            return cls.model_validate(parse_json(response))  # type: ignore[attr-defined,no-any-return]
        except pydantic.ValidationError as exc:
            raise APIResponseError(
                f"the answer to {response.request.method} {response.request.url.path} is not a {cls.__name__}: {exc}"
            ) from exc

    return parse


# --- the retry policy ---


@dataclass(frozen=True)
class RetryPolicy:
    """When a call is tried again, and after how long.

    Retried: connection errors and timeouts (the server never answered), and the answers 429, 502, 503
    and 504. Never retried: any other status, so a 4xx (bad input) or a 500 (a bug) surfaces at once.
    The delay doubles from ``backoff`` up to ``max_backoff`` with jitter; a ``Retry-After`` of up to
    ``max_retry_after`` seconds on a 429 or 503 is honoured instead. Every call the SDK makes is safe to
    repeat: creates carry the resource id, updates merge, deletes are soft and predictions are pure."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    RETRY_STATUSES: ClassVar[frozenset[int]] = frozenset({429, 502, 503, 504})
    RETRY_ERRORS: ClassVar[tuple[type[Exception], ...]] = (
        httpx.TimeoutException,
        httpx.NetworkError,
        httpx.RemoteProtocolError,
    )

    def after_error(self, attempt: int, exc: Exception) -> float | None:
        """Seconds to wait before trying again after attempt ``attempt`` (0-based) raised ``exc``, or None."""
        if attempt >= self.max_retries or not isinstance(exc, self.RETRY_ERRORS):
            return None
        return self.backoff_delay(attempt)

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again after the answer ``response``, or None to take it."""
        if attempt >= self.max_retries or response.status_code not in self.RETRY_STATUSES:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None and retry_after <= self.max_retry_after:
            return retry_after
        return self.backoff_delay(attempt)

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of ``backoff * 2**attempt``, capped."""
        delay: float = min(self.max_backoff, self.backoff * 2.0**attempt)
        return delay * (0.5 + random.random() / 2)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- the client's configuration and the steps around sending ---


class BaseClient:
    """Configuration and the steps around sending that do not depend on sync or async I/O."""

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        backoff: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
        self.base_url = (base_url or os.environ.get("MLSVC_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("MLSVC_API_KEY") or None
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries, backoff=backoff)
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"  # never the API key

    def _http_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "headers": self._headers, "timeout": self.timeout}

    @staticmethod
    def _build_request(http: httpx.Client | httpx.AsyncClient, call: Call[Any], request_id: str) -> httpx.Request:
        headers = {REQUEST_ID_HEADER: request_id}
        if call.content is not None:
            headers["Content-Type"] = "application/json"
        return http.build_request(
            call.method, call.path, json=call.json, content=call.content, params=_query(call.params), headers=headers
        )

    @staticmethod
    def _result(call: Call[T], response: httpx.Response, request_id: str) -> T:
        """The parsed answer, or the exception for an error answer."""
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise from_response(response.status_code, body, request_id)
        return call.parse(response)

    def _connection_error(self, exc: Exception, request_id: str, attempts: int) -> APIConnectionError:
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        reason = str(exc) or type(exc).__name__
        return cls(f"cannot reach mlsvc at {self.base_url}{tries}: {reason}", request_id=request_id)


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        query[key] = value.value if isinstance(value, Enum) else value
    return query


def _segment(ref: str) -> str:
    """A reference as one path segment; an empty one would silently turn `get` into `list`."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"expected a non-empty id or reference, not {ref!r}")
    return quote(ref, safe=":")


def ref_of(resource: str | Resource) -> str:
    return resource.id if isinstance(resource, Resource) else resource


def _fields(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# --- pages ---


@dataclass
class Page(Generic[T]):
    """One page of a list: its ``items`` and the ``next_token`` of the next page (None on the last).

    Iterating a page gives its items; ``iter()`` on a collection follows the tokens for you."""

    items: list[T]
    next_token: str | None = None

    @property
    def has_more(self) -> bool:
        return self.next_token is not None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def parse_page(cls: type[T]) -> Callable[[httpx.Response], Page[T]]:
    def parse(response: httpx.Response) -> Page[T]:
        body = parse_json(response)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise APIResponseError(f"the answer to {response.request.url.path} is not a page: {str(body)[:200]}")
        try:
            items = [cls.model_validate(x) for x in body["items"]]  # type: ignore[attr-defined]
        except pydantic.ValidationError as exc:
            raise APIResponseError(f"an item of {response.request.url.path} is not a {cls.__name__}: {exc}") from exc
        return Page(items, body.get("next_token") or None)

    return parse


# --- waiting ---


@dataclass
class Waiter:
    """One wait: the deadline, the poll interval, the callback and the optional display on stderr.

    The sync and async ``wait()`` loop ``get → waiter.done(resource) → sleep(waiter.delay())``. With
    ``progress``, a terminal shows a bar with the resource's message and a log gets plain lines (see ``_progress``)."""

    timeout: float | None = 600.0
    poll_interval: float = 1.0
    on_progress: ProgressCallback | None = None
    progress: bool = False
    started: float = field(default_factory=time.monotonic)
    _display: WaitDisplay | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {self.poll_interval}")
        if self.timeout is not None and self.timeout < 0:
            raise ValueError(f"timeout must be 0 or more (or None to wait for ever), not {self.timeout}")

    def __enter__(self) -> Waiter:
        if self.progress:
            from mlsvc.client._progress import open_display  # rich only for a wait that shows itself

            self._display = open_display(self.started)
        return self

    def __exit__(self, *_: object) -> None:
        if self._display is not None:
            self._display.close()

    def done(self, resource: Resource) -> bool:
        """True when ``resource`` is COMPLETED; raises when it failed or time is up; False to poll again."""
        if self.on_progress is not None:
            self.on_progress(resource)
        if self._display is not None:
            self._display.show(resource)
        status = Status(resource.status)
        if status == Status.COMPLETED:
            return True
        if status in (Status.FAILED, Status.DELETED):
            why = f": {resource.message}" if resource.message else ""
            raise ResourceFailedError(f"{resource.id} is {status.value}{why}", resource)
        if self.timeout is not None and time.monotonic() - self.started >= self.timeout:
            raise WaitTimeoutError(
                f"{resource.id} is still {status.value} ({resource.progress:.0%}) after {self.timeout:g} s", resource
            )
        return False

    def delay(self) -> float:
        """How long to sleep before the next poll: the interval, or less if the deadline is nearer."""
        if self.timeout is None:
            return self.poll_interval
        left = self.timeout - (time.monotonic() - self.started)
        return max(0.0, min(self.poll_interval, left))


# --- each resource's calls ---


class Collection(Generic[R]):
    """The calls of one REST collection (``/v1/<noun>``), built without I/O."""

    path: ClassVar[str]
    prefix: ClassVar[str]
    resource_type: type[R]
    extra_filters: ClassVar[tuple[str, ...]] = ()

    def _new_id(self) -> str:
        # Made here, not by the server, so a retried create finds the first one instead of making two.
        return f"{self.prefix}-{secrets.token_hex(6)}"

    def _get_call(self, ref: str | Resource) -> Call[R]:
        return Call("GET", f"{self.path}/{_segment(ref_of(ref))}", parse_as(self.resource_type))

    def _delete_call(self, ref: str | Resource) -> Call[R]:
        return Call("DELETE", f"{self.path}/{_segment(ref_of(ref))}", parse_as(self.resource_type))

    def _list_call(
        self,
        *,
        status: Status | str | None,
        name_prefix: str | None,
        tag: str | None,
        limit: int,
        next_token: str | None,
        filters: Mapping[str, Any],
    ) -> Call[Page[R]]:
        unknown = sorted(set(filters) - set(self.extra_filters))
        if unknown:
            allowed = ", ".join(("status", "name_prefix", "tag", *self.extra_filters))
            raise TypeError(f"unknown filter {unknown[0]!r} for {self.path}; the filters are {allowed}")
        params = {
            "status": status,
            "name_prefix": name_prefix,
            "tag": tag,
            "limit": limit,
            "next_token": next_token,
            **filters,
        }
        return Call("GET", self.path, parse_page(self.resource_type), params=params)

    def _create_call(self, fields: dict[str, Any]) -> Call[R]:
        body = _fields(**fields)
        body.setdefault("id", self._new_id())
        return Call("POST", self.path, parse_as(self.resource_type), json=body)

    def _update_call(self, ref: str | Resource, fields: dict[str, Any]) -> Call[R]:
        return Call(
            "PATCH", f"{self.path}/{_segment(ref_of(ref))}", parse_as(self.resource_type), json=_fields(**fields)
        )


class DataSourceCalls(Collection[DataSource]):
    path = "/v1/datasources"
    prefix = "ds"
    resource_type = DataSource

    def _schema_call(self, ref: str | Resource) -> Call[Schema]:
        return Call("GET", f"{self.path}/{_segment(ref_of(ref))}/schema", parse_as(Schema))

    @staticmethod
    def _schema_json(schema: Schema | Mapping[str, Any] | None) -> Any:
        if isinstance(schema, Schema):
            return schema.model_dump(mode="json", exclude_none=True)
        return schema

    @staticmethod
    def _sql_json(sql: SqlSource | Mapping[str, Any] | None) -> Any:
        """A query's body; a ``SqlSource`` dumps without its password (write-only), which is put back here."""
        if not isinstance(sql, SqlSource):
            return sql
        body = sql.model_dump(mode="json", exclude_none=True)
        return body if sql.password is None else {**body, "password": sql.password.get_secret_value()}


class ModelCalls(Collection[Model]):
    path = "/v1/models"
    prefix = "ml"
    resource_type = Model
    extra_filters = ("name",)

    def _set_alias_call(self, name: str, alias: str, version: int) -> Call[Model]:
        return Call(
            "PUT", f"{self.path}/{_segment(name)}/aliases/{_segment(alias)}", parse_as(Model), json={"version": version}
        )

    def _delete_model_call(self, ref: str | Resource, force: bool) -> Call[Model]:
        # Without force the server refuses a version an alias points at; with it, the answer says which aliases went.
        params = {"force": "true"} if force else None
        return Call("DELETE", f"{self.path}/{_segment(ref_of(ref))}", parse_as(Model), params=params)

    def _delete_alias_call(self, name: str, alias: str) -> Call[Model]:
        return Call("DELETE", f"{self.path}/{_segment(name)}/aliases/{_segment(alias)}", parse_as(Model))

    @staticmethod
    def _versions(models: list[Model]) -> list[Model]:
        return sorted(models, key=lambda m: m.version or 0)

    @staticmethod
    def _aliases(models: list[Model]) -> dict[str, int]:
        return {alias: m.version for m in models for alias in m.aliases if m.version is not None}


def predict_call(
    ref: str | Resource, record: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]] | None
) -> Call[PredictResponse]:
    if (record is None) == (records is None):
        raise TypeError("give exactly one of record (a dict) or records= (a list of dicts)")
    body = {"record": dict(record)} if record is not None else {"records": [dict(r) for r in records or ()]}
    return Call("POST", f"/v1/models/{_segment(ref_of(ref))}/predict", parse_as(PredictResponse), json=body)


def recommend_call(
    ref: str | Resource,
    *,
    user_id: str | int | None = None,
    item_id: str | int | None = None,
    k: int | None = None,
    exclude_seen: bool = True,
) -> Call[PredictResponse]:
    body: dict[str, Any] = {"user_id": user_id} if user_id is not None else {"item_id": item_id}
    if k is not None:
        body["k"] = k
    if user_id is not None:
        body["exclude_seen"] = exclude_seen
    return Call("POST", f"/v1/models/{_segment(ref_of(ref))}/predict", parse_as(PredictResponse), json=body)


def predict_batch_call(model_id: str, body: bytes) -> Call[PredictResponse]:
    """A batch of records already encoded as ``{"records": [...]}`` (see ``_frames``)."""
    return Call("POST", f"/v1/models/{_segment(model_id)}/predict", parse_as(PredictResponse), content=body)


class EvaluationCalls(Collection[Evaluation]):
    path = "/v1/evaluations"
    prefix = "ev"
    resource_type = Evaluation
    extra_filters = ("model_id",)


class BatchPredictionCalls(Collection[BatchPrediction]):
    path = "/v1/batch-predictions"
    prefix = "bp"
    resource_type = BatchPrediction
    extra_filters = ("model_id",)


HEALTH_CALL: Call[dict[str, Any]] = Call("GET", "/healthz", parse_json)
METRICS_CALL: Call[str] = Call("GET", "/metrics", lambda r: r.text)

COLLECTION_OF: dict[type[Resource], str] = {
    DataSource: "datasources",
    Model: "models",
    Evaluation: "evaluations",
    BatchPrediction: "batch_predictions",
}


def collection_name(resource: Resource) -> str:
    for cls, name in COLLECTION_OF.items():
        if isinstance(resource, cls):
            return name
    raise TypeError(f"wait() takes a DataSource, Model, Evaluation or BatchPrediction, not {type(resource).__name__}")
