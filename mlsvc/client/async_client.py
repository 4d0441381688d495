"""`mlsvc.client.AsyncClient`: the same surface as `Client`, with async methods and async iterators.

The calls, the retry policy and the error mapping live in `_base.py`, shared with `Client`;
this module only sends them over an `httpx.AsyncClient` and sleeps (with anyio) between attempts and polls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx

from mlsvc.client import _frames
from mlsvc.client._base import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    HEALTH_CALL,
    METRICS_CALL,
    BaseClient,
    BatchPredictionCalls,
    Call,
    Collection,
    DataSourceCalls,
    EvaluationCalls,
    ModelCalls,
    Page,
    ProgressCallback,
    Waiter,
    collection_name,
    new_request_id,
    parse_json,
    predict_batch_call,
    predict_call,
    recommend_call,
    ref_of,
)
from mlsvc.resources import (
    BatchPrediction,
    DataSource,
    Evaluation,
    Model,
    ModelType,
    PredictResponse,
    Rearrangement,
    Resource,
    Schema,
    SqlSource,
    Status,
)

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
R = TypeVar("R", bound=Resource)


class AsyncClient(BaseClient):
    """A connection to an mlsvc server for asyncio (or trio) code: ``Client``'s surface, awaited.

    >>> async with AsyncClient("http://127.0.0.1:8080") as client:      # or MLSVC_URL, MLSVC_API_KEY
    ...     ds = await client.datasources.wait(await client.datasources.create("churn.csv"))
    ...     model = await client.models.wait(await client.models.create("churn", ds.id))
    ...     async for m in client.models.iter(name="churn"):
    ...         print(m.version, m.status)

    ``transport`` is any ``httpx.AsyncBaseTransport``; ``httpx.ASGITransport(app=create_app(settings))``
    runs the real app in-process. ``timeout``, ``max_retries`` and ``backoff`` are as for ``Client``.
    Use it as an async context manager, or call ``await client.aclose()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff, headers=headers
        )
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        self.datasources = AsyncDataSources(self)
        self.models = AsyncModels(self)
        self.evaluations = AsyncEvaluations(self)
        self.batch_predictions = AsyncBatchPredictions(self)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        """Send one logical call, retrying per the policy with one request id for every attempt."""
        request_id = new_request_id()
        attempt = 0
        while True:
            request = self._build_request(self._http, call, request_id)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self.retry_policy.after_error(attempt, exc)
                if delay is None:
                    raise self._connection_error(exc, request_id, attempt + 1) from exc
            else:
                delay = self.retry_policy.after_response(attempt, response)
                if delay is None:
                    return self._result(call, response, request_id)
                await response.aclose()
            await anyio.sleep(delay)
            attempt += 1

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """Any API call, with the client's auth, retries and error mapping; returns the decoded JSON.

        >>> (await client.request("GET", "/v1/models", params={"name": "churn"}))["items"]
        """
        return await self._send(Call(method.upper(), path, parse_json, json=json, params=params))

    async def predict(
        self,
        ref: str | Model,
        record: Mapping[str, Any] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResponse:
        """Real-time predictions from a model (``ref``: id, ``name``, ``name:VERSION`` or ``name:ALIAS``).

        >>> (await client.predict("churn", {"tenure_months": 2})).predictions[0].predicted_label
        """
        return await self._send(predict_call(ref, record, records))

    async def recommend(
        self, ref: str | Model, user_id: str | int, k: int | None = None, *, exclude_seen: bool = True
    ) -> PredictResponse:
        """The items a RECOMMENDATION model ranks highest for ``user_id`` (popular items, ``cold_start``, for a
        user it never saw).

        >>> [r.item_id for r in client.recommend("recommendation", "U00042", k=5).recommendations]
        """
        return await self._send(recommend_call(ref, user_id=user_id, k=k, exclude_seen=exclude_seen))

    async def similar_items(self, ref: str | Model, item_id: str | int, k: int | None = None) -> PredictResponse:
        """The items most like ``item_id`` according to a RECOMMENDATION model.

        >>> [r.item_id for r in client.similar_items("recommendation", "I00007").recommendations]
        """
        return await self._send(recommend_call(ref, item_id=item_id, k=k))

    async def predict_frame(self, ref: str | Model, df: pd.DataFrame, *, batch_size: int = 500) -> pd.DataFrame:
        """Score a DataFrame in micro-batches; returns a DataFrame on ``df``'s index (see ``Client.predict_frame``).

        >>> scored = await client.predict_frame("churn", frame, batch_size=200)
        """
        _frames.check_frame(df, batch_size)
        model = await self.models.get(ref)
        codes = _frames.numeric_codes(df, model)
        if codes:  # the training data's statistics say how its codes were written
            df = _frames.as_model_types(df, codes, (await self.datasources.get(model.datasource_id)).statistics)
        answers = [
            await self._send(predict_batch_call(model.id, body)) for body in _frames.encode_batches(df, batch_size)
        ]
        return _frames.to_frame(df, model, answers)

    async def wait(
        self,
        resource: R,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> R:
        """Wait until any resource is COMPLETED (see ``models.wait``).

        >>> batch = await client.wait(await client.batch_predictions.create("churn", "out/", datasource_id=ds.id))
        """
        collection: _Async[R] = getattr(self, collection_name(resource))
        return await collection.wait(
            resource.id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress, progress=progress
        )

    async def health(self) -> dict[str, Any]:
        """The server's health check: ``{"status": "ok"}``."""
        return await self._send(HEALTH_CALL)

    async def metrics(self) -> str:
        """The server's Prometheus metrics, as text."""
        return await self._send(METRICS_CALL)


async def async_wait_for(
    get: Callable[[], Awaitable[R]],
    *,
    timeout: float | None = 600.0,
    poll_interval: float = 1.0,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
) -> R:
    """Await ``get()`` until the resource is COMPLETED and return it (see ``mlsvc.client.client.wait_for``)."""
    with Waiter(timeout, poll_interval, on_progress, progress) as waiter:
        while True:
            resource = await get()
            if waiter.done(resource):
                return resource
            await anyio.sleep(waiter.delay())


class _Async(Collection[R]):
    """The operations every collection has, sent over the async client."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, ref: str | R) -> R:
        """One resource by id (models also by ``name``, ``name:VERSION`` or ``name:ALIAS``)."""
        return await self._client._send(self._get_call(ref))

    async def list(
        self,
        *,
        status: Status | str | None = None,
        name_prefix: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
        **filters: str | None,
    ) -> Page[R]:
        """One page, newest first; ``page.next_token`` asks for the next (``iter()`` follows them for you).

        >>> page = await client.datasources.list(status="COMPLETED", limit=20)
        """
        return await self._client._send(
            self._list_call(
                status=status, name_prefix=name_prefix, tag=tag, limit=limit, next_token=next_token, filters=filters
            )
        )

    async def iter(
        self,
        *,
        status: Status | str | None = None,
        name_prefix: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
        **filters: str | None,
    ) -> AsyncIterator[R]:
        """Every matching resource, newest first, fetching pages as the loop needs them.

        >>> async for model in client.models.iter(name="churn"):
        ...     print(model.version)
        """
        token: str | None = None
        while True:
            page = await self.list(
                status=status, name_prefix=name_prefix, tag=tag, limit=page_size, next_token=token, **filters
            )
            for item in page.items:
                yield item
            if page.next_token is None:
                return
            token = page.next_token

    async def delete(self, ref: str | R) -> R:
        """Soft delete: the resource stays readable with status DELETED, and leaves lists."""
        return await self._client._send(self._delete_call(ref))

    async def wait(
        self,
        ref: str | R,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> R:
        """Poll until the resource is COMPLETED and return it (``ResourceFailedError``, ``WaitTimeoutError``).

        >>> model = await client.models.wait(model, timeout=900, progress=True)
        """
        ref = ref_of(ref)
        return await async_wait_for(
            lambda: self.get(ref),
            timeout=timeout,
            poll_interval=poll_interval,
            on_progress=on_progress,
            progress=progress,
        )


class AsyncDataSources(_Async[DataSource], DataSourceCalls):
    """``client.datasources``: CSV data (a file or a prefix) with its schema and statistics."""

    async def create(
        self,
        data_uri: str | None = None,
        *,
        sql: SqlSource | Mapping[str, Any] | None = None,
        id: str | None = None,
        name: str | None = None,
        schema: Schema | Mapping[str, Any] | None = None,
        schema_uri: str | None = None,
        target: str | None = None,
        row_id: str | None = None,
        attribute_types: Mapping[str, str] | None = None,
        rearrangement: Rearrangement | Mapping[str, Any] | None = None,
        compute_statistics: bool = True,
        max_invalid_fraction: float | None = None,
        missing_values: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> DataSource:
        """Register a CSV file or prefix, or a query's result (``sql``); returns it PENDING (see
        ``Client.datasources.create``).

        >>> ds = await client.datasources.create("s3://bucket/churn/", target="churned")
        """
        if isinstance(rearrangement, Rearrangement):
            rearrangement = rearrangement.model_dump(mode="json", exclude_none=True)
        return await self._client._send(
            self._create_call(
                dict(
                    id=id,
                    name=name,
                    data_uri=data_uri,
                    sql=self._sql_json(sql),
                    schema=self._schema_json(schema),
                    schema_uri=schema_uri,
                    target=target,
                    row_id=row_id,
                    attribute_types=attribute_types,
                    rearrangement=rearrangement,
                    compute_statistics=compute_statistics,
                    max_invalid_fraction=max_invalid_fraction,
                    missing_values=list(missing_values) if missing_values is not None else None,
                    tags=tags,
                )
            )
        )

    async def update(
        self, ref: str | DataSource, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> DataSource:
        """Rename, or merge tags (a None value removes that tag)."""
        return await self._client._send(self._update_call(ref, dict(name=name, tags=tags)))

    async def schema(self, ref: str | DataSource) -> Schema:
        """The datasource's Amazon ML schema (``NotReadyError`` until it is COMPLETED)."""
        return await self._client._send(self._schema_call(ref))


class AsyncModels(_Async[Model], ModelCalls):
    """``client.models``: trained, versioned models (``ref``: id, ``name``, ``name:VERSION``, ``name:ALIAS``)."""

    async def create(
        self,
        name: str,
        datasource_id: str | DataSource,
        *,
        id: str | None = None,
        target: str | None = None,
        model_type: ModelType | str | None = None,
        time_budget_s: float | None = None,
        recipe: Mapping[str, Any] | None = None,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        seed: int | None = None,
        promote: str | None = None,
        tags: Mapping[str, str] | None = None,
        roles: Mapping[str, str | None] | None = None,
        k: int | None = None,
        items_datasource_id: str | DataSource | None = None,
    ) -> Model:
        """Train the next version of ``name`` on a COMPLETED datasource; returns it PENDING (RECOMMENDATION
        takes ``roles``, ``k`` and ``items_datasource_id`` as in ``Client.models.create``).

        >>> model = await client.models.wait(await client.models.create("churn", ds.id, time_budget_s=60))
        """
        return await self._client._send(
            self._create_call(
                dict(
                    id=id,
                    name=name,
                    datasource_id=ref_of(datasource_id),
                    target=target,
                    model_type=model_type,
                    time_budget_s=time_budget_s,
                    recipe=recipe,
                    candidates=candidates,
                    seed=seed,
                    promote=promote,
                    tags=tags,
                    roles=roles,
                    k=k,
                    items_datasource_id=ref_of(items_datasource_id) if items_datasource_id else None,
                )
            )
        )

    async def get(self, ref: str | Model) -> Model:
        """A model by id, ``name:VERSION``, ``name:ALIAS`` or ``name``."""
        return await self._client._send(self._get_call(ref))

    async def update(
        self, ref: str | Model, *, score_threshold: float | None = None, tags: Mapping[str, str | None] | None = None
    ) -> Model:
        """Set a BINARY model's score threshold, or merge tags (a None value removes that tag)."""
        return await self._client._send(self._update_call(ref, dict(score_threshold=score_threshold, tags=tags)))

    async def set_alias(self, name: str, alias: str, version: int) -> Model:
        """Point ``alias`` at ``version`` of ``name``; predictions by ``name:alias`` switch at once."""
        return await self._client._send(self._set_alias_call(name, alias, version))

    async def delete(self, ref: str | Model, *, force: bool = False) -> Model:
        """Soft delete a version; one an alias points at only with ``force=True`` (see ``Client.models.delete``)."""
        return await self._client._send(self._delete_model_call(ref, force))

    async def delete_alias(self, name: str, alias: str) -> Model:
        """Remove ``alias`` from ``name``; returns the version it pointed at."""
        return await self._client._send(self._delete_alias_call(name, alias))

    async def versions(self, name: str) -> list[Model]:
        """Every version of ``name`` that is not deleted, oldest first."""
        return self._versions([m async for m in self.iter(name=name)])

    async def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` and the version each points at: ``{"production": 2}``."""
        return self._aliases(await self.versions(name))

    async def predict(
        self,
        ref: str | Model,
        record: Mapping[str, Any] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResponse:
        """The same as ``client.predict``."""
        return await self._client.predict(ref, record, records=records)

    async def predict_frame(self, ref: str | Model, df: pd.DataFrame, *, batch_size: int = 500) -> pd.DataFrame:
        """The same as ``client.predict_frame``."""
        return await self._client.predict_frame(ref, df, batch_size=batch_size)


class AsyncEvaluations(_Async[Evaluation], EvaluationCalls):
    """``client.evaluations``: a model's metrics and insights on labelled data."""

    async def create(
        self,
        model: str | Model,
        datasource_id: str | DataSource,
        *,
        id: str | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Evaluation:
        """Evaluate ``model`` (any reference) on a COMPLETED datasource that has the target; returns it PENDING."""
        return await self._client._send(
            self._create_call(
                dict(id=id, name=name, model=ref_of(model), datasource_id=ref_of(datasource_id), tags=tags)
            )
        )

    async def update(
        self, ref: str | Evaluation, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> Evaluation:
        """Rename, or merge tags (a None value removes that tag)."""
        return await self._client._send(self._update_call(ref, dict(name=name, tags=tags)))


class AsyncBatchPredictions(_Async[BatchPrediction], BatchPredictionCalls):
    """``client.batch_predictions``: predictions for every row of a datasource or CSV, written to files."""

    async def create(
        self,
        model: str | Model,
        output_uri: str,
        *,
        datasource_id: str | DataSource | None = None,
        data_uri: str | None = None,
        row_id: str | None = None,
        id: str | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> BatchPrediction:
        """Score every row of ``datasource_id`` (or the CSV at ``data_uri``) into ``output_uri``; returns it PENDING."""
        return await self._client._send(
            self._create_call(
                dict(
                    id=id,
                    name=name,
                    model=ref_of(model),
                    datasource_id=ref_of(datasource_id) if datasource_id is not None else None,
                    data_uri=data_uri,
                    row_id=row_id,
                    output_uri=output_uri,
                    tags=tags,
                )
            )
        )

    async def update(
        self, ref: str | BatchPrediction, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> BatchPrediction:
        """Rename, or merge tags (a None value removes that tag)."""
        return await self._client._send(self._update_call(ref, dict(name=name, tags=tags)))
