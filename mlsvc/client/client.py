"""`mlsvc.client.Client`: the REST API from Python, with typed results, retries, pagination and waiters.

The calls, the retry policy and the error mapping live in `_base.py`, shared with `AsyncClient`;
this module only sends them over an `httpx.Client` and sleeps between attempts and polls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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


class Client(BaseClient):
    """A connection to an mlsvc server.

    >>> client = Client("http://127.0.0.1:8080")            # or MLSVC_URL; api_key= or MLSVC_API_KEY
    >>> ds = client.datasources.create("datasources/churn.csv", target="churned")
    >>> ds = client.datasources.wait(ds, progress=True)
    >>> model = client.models.wait(client.models.create("churn", ds.id), progress=True)
    >>> client.predict("churn", {"tenure_months": 2}).predictions[0].predicted_label
    'yes'

    ``transport`` is any ``httpx.BaseTransport`` (the seam tests use); ``timeout`` is seconds per attempt
    (or an ``httpx.Timeout``); ``max_retries`` and ``backoff`` set the retry policy (see ``RetryPolicy``).
    Use it as a context manager, or call ``close()``.
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff, headers=headers
        )
        self._http = httpx.Client(transport=transport, **self._http_options())
        self.datasources = DataSources(self)
        self.models = Models(self)
        self.evaluations = Evaluations(self)
        self.batch_predictions = BatchPredictions(self)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        """Send one logical call, retrying per the policy with one request id for every attempt."""
        request_id = new_request_id()
        attempt = 0
        while True:
            request = self._build_request(self._http, call, request_id)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self.retry_policy.after_error(attempt, exc)
                if delay is None:
                    raise self._connection_error(exc, request_id, attempt + 1) from exc
            else:
                delay = self.retry_policy.after_response(attempt, response)
                if delay is None:
                    return self._result(call, response, request_id)
                response.close()
            time.sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Any API call, with the client's auth, retries and error mapping; returns the decoded JSON.

        >>> client.request("GET", "/v1/models", params={"name": "churn"})["items"]
        """
        return self._send(Call(method.upper(), path, parse_json, json=json, params=params))

    def predict(
        self,
        ref: str | Model,
        record: Mapping[str, Any] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResponse:
        """Real-time predictions from a model: ``ref`` is an id, ``name``, ``name:VERSION`` or ``name:ALIAS``.

        >>> client.predict("churn", {"tenure_months": 2}).predictions[0].predicted_scores
        {'no': 0.31, 'yes': 0.69}
        >>> client.predict("churn:2", records=[{"tenure_months": 2}, {"tenure_months": 40}]).version
        2
        """
        return self._send(predict_call(ref, record, records))

    def recommend(
        self, ref: str | Model, user_id: str | int, k: int | None = None, *, exclude_seen: bool = True
    ) -> PredictResponse:
        """The items a RECOMMENDATION model ranks highest for ``user_id`` (popular items, ``cold_start``, for a
        user it never saw).

        >>> [r.item_id for r in client.recommend("recommendation", "U00042", k=5).recommendations]
        """
        return self._send(recommend_call(ref, user_id=user_id, k=k, exclude_seen=exclude_seen))

    def similar_items(self, ref: str | Model, item_id: str | int, k: int | None = None) -> PredictResponse:
        """The items most like ``item_id`` according to a RECOMMENDATION model.

        >>> [r.item_id for r in client.similar_items("recommendation", "I00007").recommendations]
        """
        return self._send(recommend_call(ref, item_id=item_id, k=k))

    def predict_frame(self, ref: str | Model, df: pd.DataFrame, *, batch_size: int = 500) -> pd.DataFrame:
        """Score a DataFrame in micro-batches; returns a DataFrame on ``df``'s index.

        >>> scored = client.predict_frame("churn", pandas.read_csv("customers.csv"))
        >>> scored[["predicted_label", "score_yes"]].head()

        Columns: ``predicted_label`` and one ``score_<label>`` per class (classification) or
        ``predicted_value`` (regression), and ``warnings`` (a list per row). NaN and None are sent as null
        (a missing value). ``ref`` is resolved once, so every batch is scored by the same version;
        ``scored.attrs`` holds its ``model_id`` and ``version``.

        A column of numbers for a CATEGORICAL attribute (``pd.read_csv`` reads ``02139`` as 2139) is sent as the
        text of its codes, zero-padded to the width the training data wrote them in; where the training data's
        statistics cannot tell, a ``UserWarning`` says to read the CSV with ``dtype={"region": str}``.
        """
        _frames.check_frame(df, batch_size)
        model = self.models.get(ref)
        codes = _frames.numeric_codes(df, model)
        if codes:  # the training data's statistics say how its codes were written
            df = _frames.as_model_types(df, codes, self.datasources.get(model.datasource_id).statistics)
        answers = [self._send(predict_batch_call(model.id, body)) for body in _frames.encode_batches(df, batch_size)]
        return _frames.to_frame(df, model, answers)

    def wait(
        self,
        resource: R,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> R:
        """Wait until any resource is COMPLETED (see ``client.models.wait``).

        >>> batch = client.wait(client.batch_predictions.create("churn", "out/", datasource_id=ds.id))
        """
        collection: _Sync[R] = getattr(self, collection_name(resource))
        return collection.wait(
            resource.id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress, progress=progress
        )

    def health(self) -> dict[str, Any]:
        """The server's health check: ``{"status": "ok"}``."""
        return self._send(HEALTH_CALL)

    def metrics(self) -> str:
        """The server's Prometheus metrics, as text."""
        return self._send(METRICS_CALL)


def wait_for(
    get: Callable[[], R],
    *,
    timeout: float | None = 600.0,
    poll_interval: float = 1.0,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
) -> R:
    """Call ``get`` until the resource it returns is COMPLETED, and return that.

    Raises ``ResourceFailedError`` when it becomes FAILED or DELETED, ``WaitTimeoutError`` after ``timeout``
    seconds (None waits for ever). ``on_progress`` is called with every state seen; ``progress=True`` shows
    a progress bar with the resource's message on stderr (plain lines when stderr is not a terminal).
    """
    with Waiter(timeout, poll_interval, on_progress, progress) as waiter:
        while True:
            resource = get()
            if waiter.done(resource):
                return resource
            time.sleep(waiter.delay())


class _Sync(Collection[R]):
    """The operations every collection has, sent over the sync client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, ref: str | R) -> R:
        """One resource by id (models also by ``name``, ``name:VERSION`` or ``name:ALIAS``)."""
        return self._client._send(self._get_call(ref))

    def list(
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

        >>> page = client.datasources.list(status="COMPLETED", tag="team=growth", limit=20)
        >>> [ds.id for ds in page], page.next_token

        ``tag`` is ``key`` or ``key=value``; DELETED resources are listed only with ``status="DELETED"``.
        Models also filter by ``name=``; evaluations and batch predictions by ``model_id=``.
        """
        return self._client._send(
            self._list_call(
                status=status, name_prefix=name_prefix, tag=tag, limit=limit, next_token=next_token, filters=filters
            )
        )

    def iter(
        self,
        *,
        status: Status | str | None = None,
        name_prefix: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
        **filters: str | None,
    ) -> Iterator[R]:
        """Every matching resource, newest first, fetching pages as the loop needs them.

        >>> for model in client.models.iter(name="churn", status="COMPLETED"):
        ...     print(model.version, model.metrics.get("BinaryAUC"))
        """
        token: str | None = None
        while True:
            page = self.list(
                status=status, name_prefix=name_prefix, tag=tag, limit=page_size, next_token=token, **filters
            )
            yield from page.items
            if page.next_token is None:
                return
            token = page.next_token

    def delete(self, ref: str | R) -> R:
        """Soft delete: the resource stays readable with status DELETED, and leaves lists."""
        return self._client._send(self._delete_call(ref))

    def wait(
        self,
        ref: str | R,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> R:
        """Poll until the resource is COMPLETED and return it.

        >>> model = client.models.wait(model, timeout=900, progress=True)      # a bar (or lines) on stderr
        >>> client.datasources.wait(ds.id, on_progress=lambda r: print(r.status, r.progress))

        Raises ``ResourceFailedError`` (with ``.resource``) when it becomes FAILED or DELETED, and
        ``WaitTimeoutError`` after ``timeout`` seconds (None waits for ever).
        """
        ref = ref_of(ref)
        return wait_for(
            lambda: self.get(ref),
            timeout=timeout,
            poll_interval=poll_interval,
            on_progress=on_progress,
            progress=progress,
        )


class DataSources(_Sync[DataSource], DataSourceCalls):
    """``client.datasources``: CSV data (a file or a prefix) with its schema and statistics."""

    def create(
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
        """Register a CSV file or prefix (a local path, ``file://`` or ``s3://``); returns it PENDING.

        >>> ds = client.datasources.create("s3://bucket/churn/", target="churned", tags={"team": "growth"})
        >>> train = client.datasources.create("churn.csv", rearrangement={"splitting": {"percentEnd": 70}})

        The schema is inferred unless ``schema`` or ``schema_uri`` (an Amazon ML ``.schema`` file) is given;
        ``attribute_types`` overrides single types. ``missing_values``: the tokens read as missing in every
        column (blank cells always are; by default ``resources.DEFAULT_MISSING_VALUES``, except where one is a
        frequent level of a CATEGORICAL column). Creating again with the same ``id`` and parameters returns the
        existing datasource; with other parameters it raises ``ConflictError``.

        Or, instead of ``data_uri``, ``sql``: a query whose result is staged as CSV, then read the same way
        (``resources.SqlSource``; its password is sent once and never shown back):

        >>> ds = client.datasources.create(sql={"engine": "postgresql", "host": "127.0.0.1", "database": "shop",
        ...     "username": "reader", "password": "…", "query": "SELECT * FROM churn", "staging_uri": "s3://b/stage/"})
        """
        if isinstance(rearrangement, Rearrangement):
            rearrangement = rearrangement.model_dump(mode="json", exclude_none=True)
        return self._client._send(
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

    def update(
        self, ref: str | DataSource, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> DataSource:
        """Rename, or merge tags (a None value removes that tag).

        >>> client.datasources.update(ds, name="churn-2024", tags={"team": "growth", "draft": None})
        """
        return self._client._send(self._update_call(ref, dict(name=name, tags=tags)))

    def schema(self, ref: str | DataSource) -> Schema:
        """The datasource's Amazon ML schema (``NotReadyError`` until it is COMPLETED).

        >>> client.datasources.schema(ds).targetAttributeName
        'churned'
        """
        return self._client._send(self._schema_call(ref))


class Models(_Sync[Model], ModelCalls):
    """``client.models``: trained, versioned models; ``ref`` is an id, ``name``, ``name:VERSION`` or
    ``name:ALIAS`` (a bare ``name`` is its ``production`` alias, else its newest COMPLETED version)."""

    def create(
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
        """Train the next version of ``name`` on a COMPLETED datasource; returns it PENDING.

        For ``model_type="RECOMMENDATION"`` the datasource holds interactions; ``roles`` names its user, item,
        rating and timestamp columns (else inferred from their names), ``k`` is the list length, and
        ``items_datasource_id`` adds item attributes for items nobody interacted with.

        >>> model = client.models.create("churn", ds.id, time_budget_s=60, tags={"owner": "ana"})
        >>> model = client.models.wait(model, progress=True)

        ``promote="auto"`` (the default) moves the ``production`` alias to it when it beats the current
        one; ``"never"`` leaves the alias alone.
        """
        return self._client._send(
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

    def get(self, ref: str | Model) -> Model:
        """A model by id, ``name:VERSION``, ``name:ALIAS`` or ``name``.

        >>> client.models.get("churn:production").version
        """
        return self._client._send(self._get_call(ref))

    def update(
        self, ref: str | Model, *, score_threshold: float | None = None, tags: Mapping[str, str | None] | None = None
    ) -> Model:
        """Set a BINARY model's score threshold, or merge tags (a None value removes that tag).

        >>> client.models.update("churn:2", score_threshold=0.35)
        """
        return self._client._send(self._update_call(ref, dict(score_threshold=score_threshold, tags=tags)))

    def set_alias(self, name: str, alias: str, version: int) -> Model:
        """Point ``alias`` at ``version`` of ``name``; predictions by ``name:alias`` switch at once.

        >>> client.models.set_alias("churn", "production", 2)
        """
        return self._client._send(self._set_alias_call(name, alias, version))

    def delete(self, ref: str | Model, *, force: bool = False) -> Model:
        """Soft delete a version: it stays readable as DELETED and leaves lists. A version an alias points at
        (``production``, say) is refused with ``ConflictError`` unless ``force=True``, which removes its aliases.

        >>> client.models.delete("churn:1", force=True).message
        """
        return self._client._send(self._delete_model_call(ref, force))

    def delete_alias(self, name: str, alias: str) -> Model:
        """Remove ``alias`` from ``name``; returns the version it pointed at."""
        return self._client._send(self._delete_alias_call(name, alias))

    def versions(self, name: str) -> list[Model]:
        """Every version of ``name`` that is not deleted, oldest first.

        >>> [(m.version, m.status, m.aliases) for m in client.models.versions("churn")]
        """
        return self._versions(list(self.iter(name=name)))

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` and the version each points at: ``{"production": 2}``."""
        return self._aliases(self.versions(name))

    def predict(
        self,
        ref: str | Model,
        record: Mapping[str, Any] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResponse:
        """The same as ``client.predict``."""
        return self._client.predict(ref, record, records=records)

    def predict_frame(self, ref: str | Model, df: pd.DataFrame, *, batch_size: int = 500) -> pd.DataFrame:
        """The same as ``client.predict_frame``."""
        return self._client.predict_frame(ref, df, batch_size=batch_size)


class Evaluations(_Sync[Evaluation], EvaluationCalls):
    """``client.evaluations``: a model's metrics and insights on labelled data."""

    def create(
        self,
        model: str | Model,
        datasource_id: str | DataSource,
        *,
        id: str | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Evaluation:
        """Evaluate ``model`` (any reference) on a COMPLETED datasource that has the target; returns it PENDING.

        >>> ev = client.evaluations.wait(client.evaluations.create("churn:2", test_ds.id))
        >>> ev.metric, ev.value, ev.vs_baseline
        """
        return self._client._send(
            self._create_call(
                dict(id=id, name=name, model=ref_of(model), datasource_id=ref_of(datasource_id), tags=tags)
            )
        )

    def update(
        self, ref: str | Evaluation, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> Evaluation:
        """Rename, or merge tags (a None value removes that tag)."""
        return self._client._send(self._update_call(ref, dict(name=name, tags=tags)))


class BatchPredictions(_Sync[BatchPrediction], BatchPredictionCalls):
    """``client.batch_predictions``: predictions for every row of a datasource or CSV, written to files."""

    def create(
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
        """Score every row of ``datasource_id`` (or the CSV at ``data_uri``) into ``output_uri``; returns it PENDING.

        >>> bp = client.batch_predictions.create("churn", "s3://bucket/scores/", datasource_id=ds.id)
        >>> client.batch_predictions.wait(bp, progress=True).manifest_uri
        """
        return self._client._send(
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

    def update(
        self, ref: str | BatchPrediction, *, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> BatchPrediction:
        """Rename, or merge tags (a None value removes that tag)."""
        return self._client._send(self._update_call(ref, dict(name=name, tags=tags)))
