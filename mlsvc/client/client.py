"""`mlsvc.Client`: the REST API from Python, with typed results, retries, pagination and waiters."""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from mlsvc.client.errors import APIConnectionError, ResourceFailedError, WaitTimeoutError, from_response
from mlsvc.resources import BatchPrediction, DataSource, Evaluation, Model, PredictResponse, Resource, Schema

R = TypeVar("R", bound=Resource)
ProgressCallback = Callable[[Resource], None]
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
RETRY_STATUS = {502, 503, 504}


class Client:
    """A connection to an mlsvc server.

    >>> client = Client("http://127.0.0.1:8080")
    >>> ds = client.datasources.create(data_uri="datasources/churn.csv", target="churned")
    >>> client.datasources.wait(ds.id)
    """

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, transport: httpx.BaseTransport | None = None) -> None:
        base_url = base_url or os.environ.get("MLSVC_URL") or DEFAULT_BASE_URL
        api_key = api_key or os.environ.get("MLSVC_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries = max_retries
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.datasources = DataSources(self)
        self.models = Models(self)
        self.evaluations = Evaluations(self)
        self.batch_predictions = BatchPredictions(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Send a request and return the decoded JSON; retries connection errors and 502/503/504 with backoff.
        Creates are safe to retry because every create carries an id."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"cannot reach mlsvc at {self._http.base_url}: {exc}") from exc
                _backoff(attempt)
                continue
            if response.status_code in RETRY_STATUS and attempt < self.max_retries:
                _backoff(attempt)
                continue
            return _decode(response)
        raise AssertionError("unreachable")

    def predict(self, ref: str, record: dict[str, Any] | None = None, *,
                records: list[dict[str, Any]] | None = None) -> PredictResponse:
        """Real-time predictions from the model ``ref`` (id, name, name:VERSION or name:ALIAS)."""
        body = {"record": record} if records is None else {"records": records}
        return PredictResponse.model_validate(self.request("POST", f"/v1/models/{ref}/predict", json=body))

    def wait(self, get: Callable[[], R], *, timeout: float = 600.0, poll: float = 0.5,
             on_progress: ProgressCallback | None = None) -> R:
        """Poll ``get`` until the resource is COMPLETED (see ``wait_for``)."""
        return wait_for(get, timeout=timeout, poll=poll, on_progress=on_progress)


def wait_for(get: Callable[[], R], *, timeout: float = 600.0, poll: float = 0.5,
             on_progress: ProgressCallback | None = None) -> R:
    """Poll until the resource is COMPLETED; raise ResourceFailedError if it FAILED or was DELETED,
    WaitTimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        resource = get()
        if on_progress:
            on_progress(resource)
        if resource.status == "COMPLETED":
            return resource
        if resource.status in ("FAILED", "DELETED"):
            raise ResourceFailedError(f"{resource.id} is {resource.status}: {resource.message}", resource)
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"{resource.id} still {resource.status} after {timeout:.0f}s")
        time.sleep(poll)


def _backoff(attempt: int) -> None:
    time.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))


def _decode(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        raise from_response(response.status_code, body)
    return body


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _Resources:
    path = ""
    prefix = ""
    type: type[Resource] = Resource

    def __init__(self, client: Client) -> None:
        self._client = client

    def _new_id(self) -> str:
        # Made here, not by the server, so that a retried create finds the first one instead of making two.
        return f"{self.prefix}-{secrets.token_hex(6)}"

    def _one(self, data: Any) -> Any:
        return self.type.model_validate(data)

    def list(self, *, status: str | None = None, name_prefix: str | None = None, tag: str | None = None,
             limit: int = 100, next_token: str | None = None, **filters: Any) -> tuple[list[Any], str | None]:
        """One page: the items and the token of the next page (None at the end)."""
        page = self._client.request("GET", self.path, params={"status": status, "name_prefix": name_prefix,
                                                              "tag": tag, "limit": limit,
                                                              "next_token": next_token, **filters})
        return [self._one(item) for item in page["items"]], page["next_token"]

    def iter(self, **filters: Any) -> Iterator[Any]:
        """Every matching resource, fetching pages as needed."""
        token: str | None = None
        while True:
            items, token = self.list(next_token=token, **filters)
            yield from items
            if not token:
                return

    def wait(self, ref: str, *, timeout: float = 600.0, poll: float = 0.5,
             on_progress: ProgressCallback | None = None) -> Any:
        """Wait until ``ref`` is COMPLETED (see Client.wait)."""
        return self._client.wait(lambda: self.get(ref), timeout=timeout, poll=poll, on_progress=on_progress)

    def get(self, ref: str) -> Any:
        return self._one(self._client.request("GET", f"{self.path}/{ref}"))

    def delete(self, ref: str) -> Any:
        """Soft delete: the resource stays readable with status DELETED."""
        return self._one(self._client.request("DELETE", f"{self.path}/{ref}"))


class DataSources(_Resources):
    """``client.datasources``: CSV data with its schema and statistics."""

    path = "/v1/datasources"
    prefix = "ds"
    type = DataSource

    def create(self, data_uri: str, *, id: str | None = None, name: str | None = None,
               schema: Schema | dict[str, Any] | None = None, schema_uri: str | None = None,
               target: str | None = None, row_id: str | None = None, rearrangement: dict[str, Any] | None = None,
               compute_statistics: bool = True, max_invalid_fraction: float | None = None,
               tags: dict[str, str] | None = None) -> DataSource:
        """Register a CSV file or prefix (local path, file:// or s3://); returns it PENDING."""
        if isinstance(schema, Schema):
            schema = schema.model_dump(mode="json", exclude_none=True)
        body = _body(id=id or self._new_id(), name=name, data_uri=data_uri, schema=schema, schema_uri=schema_uri,
                     target=target, row_id=row_id, rearrangement=rearrangement,
                     compute_statistics=compute_statistics, max_invalid_fraction=max_invalid_fraction, tags=tags)
        return self._one(self._client.request("POST", self.path, json=body))

    def get(self, ref: str) -> DataSource:
        return self._one(self._client.request("GET", f"{self.path}/{ref}"))

    def update(self, ref: str, *, name: str | None = None, tags: dict[str, str | None] | None = None
               ) -> DataSource:
        """Rename, or merge tags (a None value removes that tag)."""
        return self._one(self._client.request("PATCH", f"{self.path}/{ref}", json=_body(name=name, tags=tags)))

    def schema(self, ref: str) -> Schema:
        """The datasource's Amazon ML schema."""
        return Schema.model_validate(self._client.request("GET", f"{self.path}/{ref}/schema"))


class Models(_Resources):
    """``client.models``: trained, versioned models."""

    path = "/v1/models"
    prefix = "ml"
    type = Model

    def create(self, name: str, datasource_id: str, *, id: str | None = None, target: str | None = None,
               model_type: str | None = None, time_budget_s: float | None = None,
               recipe: dict[str, Any] | None = None, seed: int | None = None, promote: str | None = None,
               tags: dict[str, str] | None = None) -> Model:
        """Train the next version of ``name`` on a COMPLETED datasource; returns it PENDING."""
        body = _body(id=id or self._new_id(), name=name, datasource_id=datasource_id, target=target,
                     model_type=model_type, time_budget_s=time_budget_s, recipe=recipe, seed=seed,
                     promote=promote, tags=tags)
        return self._one(self._client.request("POST", self.path, json=body))

    def get(self, ref: str) -> Model:
        """A model by id, name:VERSION, name:ALIAS or name."""
        return self._one(self._client.request("GET", f"{self.path}/{ref}"))

    def update(self, ref: str, *, score_threshold: float | None = None,
               tags: dict[str, str | None] | None = None) -> Model:
        return self._one(self._client.request("PATCH", f"{self.path}/{ref}",
                                              json=_body(score_threshold=score_threshold, tags=tags)))

    def set_alias(self, name: str, alias: str, version: int) -> Model:
        """Point ``alias`` at ``version`` of ``name``; predictions by ``name:alias`` switch at once."""
        return self._one(self._client.request("PUT", f"{self.path}/{name}/aliases/{alias}",
                                              json={"version": version}))

    def predict(self, ref: str, record: dict[str, Any] | None = None, *,
                records: list[dict[str, Any]] | None = None) -> PredictResponse:
        return self._client.predict(ref, record, records=records)


class Evaluations(_Resources):
    """``client.evaluations``: a model's metrics and insights on labelled data."""

    path = "/v1/evaluations"
    prefix = "ev"
    type = Evaluation

    def create(self, model: str, datasource_id: str, *, id: str | None = None, name: str | None = None,
               tags: dict[str, str] | None = None) -> Evaluation:
        """Evaluate the model ``model`` (any reference) on a COMPLETED datasource that has its target."""
        body = _body(id=id or self._new_id(), name=name, model=model, datasource_id=datasource_id, tags=tags)
        return self._one(self._client.request("POST", self.path, json=body))

    def get(self, ref: str) -> Evaluation:
        return self._one(self._client.request("GET", f"{self.path}/{ref}"))

    def update(self, ref: str, *, name: str | None = None, tags: dict[str, str | None] | None = None
               ) -> Evaluation:
        return self._one(self._client.request("PATCH", f"{self.path}/{ref}", json=_body(name=name, tags=tags)))


class BatchPredictions(_Resources):
    """``client.batch_predictions``: predictions for every row of a datasource or CSV, written to files."""

    path = "/v1/batch-predictions"
    prefix = "bp"
    type = BatchPrediction

    def create(self, model: str, output_uri: str, *, datasource_id: str | None = None, data_uri: str | None = None,
               row_id: str | None = None, id: str | None = None, name: str | None = None,
               tags: dict[str, str] | None = None) -> BatchPrediction:
        """Score every row of ``datasource_id`` (or the CSV at ``data_uri``) with ``model`` into ``output_uri``."""
        body = _body(id=id or self._new_id(), name=name, model=model, datasource_id=datasource_id,
                     data_uri=data_uri, row_id=row_id, output_uri=output_uri, tags=tags)
        return self._one(self._client.request("POST", self.path, json=body))

    def get(self, ref: str) -> BatchPrediction:
        return self._one(self._client.request("GET", f"{self.path}/{ref}"))

    def update(self, ref: str, *, name: str | None = None, tags: dict[str, str | None] | None = None
               ) -> BatchPrediction:
        return self._one(self._client.request("PATCH", f"{self.path}/{ref}", json=_body(name=name, tags=tags)))
