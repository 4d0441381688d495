"""The SDK against the real server: `Client` over a socket to `mlsvc serve`, `AsyncClient` in-process
through `httpx.ASGITransport` (with a job worker thread), every method, the error classes, retries and
idempotent creates, the API key, and `predict_frame` on the churn example."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from sklearn.metrics import roc_auc_score

from mlsvc.client import (
    APIConnectionError,
    AsyncClient,
    Client,
    ConflictError,
    DataSource,
    Model,
    NotFoundError,
    NotReadyError,
    Page,
    PayloadTooLargeError,
    ResourceFailedError,
    RetryPolicy,
    ServiceUnavailableError,
    UnauthenticatedError,
    ValidationError,
    WaitTimeoutError,
)
from mlsvc.client._base import parse_retry_after
from mlsvc.client.errors import BY_CODE
from mlsvc.config import Settings
from mlsvc.errors import ErrorCode
from mlsvc.jobs.worker import Worker
from mlsvc.server.app import create_app
from tests.datasets import LOYAL, RISKY, churn_records
from tests.inprocess import settings_for
from tests.scoring import implied_label, pipeline_output, registered_pipeline
from tests.servers import REPO, RunningServer

CHURN = REPO / "datasources" / "churn.csv"


# --- a transport that loses the first attempts, around the real one ---


class Flaky(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Passes every request to the real transport, except that the first ones fail as listed:

    ``connect``  dropped before the server sees it (httpx.ConnectError)
    ``lost``     the server handles it, then the answer is lost (httpx.ReadError)
    ``503``      answered 503 by this hop, as a proxy in front of a restarting server would
    ``429:S``    answered 429 with ``Retry-After: S``
    """

    def __init__(self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport, *failures: str) -> None:
        self.inner = inner
        self.failures = list(failures)
        self.seen: list[httpx.Request] = []

    def _failure(self, request: httpx.Request) -> tuple[str | None, httpx.Response | None]:
        self.seen.append(request)
        failure = self.failures.pop(0) if self.failures else None
        if failure == "connect":
            raise httpx.ConnectError("connection refused (test)", request=request)
        if failure == "503":
            return failure, httpx.Response(503, text="upstream unavailable", request=request)
        if failure and failure.startswith("429:"):
            return failure, httpx.Response(429, text="slow down", headers={"Retry-After": failure[4:]}, request=request)
        return failure, None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        failure, answer = self._failure(request)
        if answer is not None:
            return answer
        assert isinstance(self.inner, httpx.BaseTransport)
        response = self.inner.handle_request(request)
        if failure == "lost":
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer (test)", request=request)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        failure, answer = self._failure(request)
        if answer is not None:
            return answer
        assert isinstance(self.inner, httpx.AsyncBaseTransport)
        response = await self.inner.handle_async_request(request)
        if failure == "lost":
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection reset by peer (test)", request=request)
        return response

    def request_ids(self) -> list[str]:
        return [r.headers["X-Request-Id"] for r in self.seen]

    def close(self) -> None:  # the client closes its transport: this one closes the real one it wraps
        assert isinstance(self.inner, httpx.BaseTransport)
        self.inner.close()

    async def aclose(self) -> None:
        assert isinstance(self.inner, httpx.AsyncBaseTransport)
        await self.inner.aclose()


def small_csv(folder: Path, name: str = "small.csv") -> Path:
    """40 rows in the churn example's columns, taken from it."""
    path = folder / name
    pd.read_csv(CHURN, nrows=40).to_csv(path, index=False)
    return path


def churn_frame(rows: int = 300) -> pd.DataFrame:
    """Churn rows without the target, with a shuffled, non-default index and some missing values."""
    frame = pd.read_csv(CHURN, nrows=rows, dtype={"region": str}).drop(columns=["churned", "customer_id"])
    frame.index = pd.Index([f"row{i}" for i in np.random.default_rng(0).permutation(rows)], name="key")
    frame.loc[frame.index[::7], "monthly_charges"] = np.nan
    frame.loc[frame.index[::11], "contract"] = None
    return frame


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The same records as predict_frame sends: missing values as None."""
    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


# ===================== Client (sync) over a socket to `mlsvc serve` =====================


@pytest.fixture(scope="module")
def client(mlsvc_server: RunningServer) -> Iterator[Client]:
    with Client(mlsvc_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def churn(client: Client) -> SimpleNamespace:
    """The churn datasource and two versions of the model 'sdk-churn', trained at once on the server's workers.
    Also records what waiting saw: the states passed to the callback, and a wait that timed out."""
    ds = client.datasources.create(str(CHURN), name="sdk-churn", tags={"suite": "sdk"})
    states: list[DataSource] = []
    ds = client.datasources.wait(ds, timeout=120, poll_interval=0.05, on_progress=states.append)
    first = client.models.create("sdk-churn", ds, time_budget_s=3, promote="never")
    second = client.models.create("sdk-churn", ds.id, time_budget_s=3, seed=7, promote="never")
    with pytest.raises(WaitTimeoutError) as timed_out:
        client.models.wait(second, timeout=0.3, poll_interval=0.1)
    model_states: list[Model] = []
    first = client.models.wait(first, timeout=180, poll_interval=0.2, on_progress=model_states.append)
    second = client.wait(second, timeout=180, poll_interval=0.2)
    v1, v2 = sorted([first, second], key=lambda m: m.version or 0)  # versions go in the order training ends
    return SimpleNamespace(
        ds=ds,
        states=states,
        v1=v1,
        v2=v2,
        newest_first=[second.id, first.id],
        model_states=model_states,
        timed_out=timed_out.value,
    )


def test_wait_calls_back_with_every_state_until_completed(churn: SimpleNamespace) -> None:
    statuses = [s.status for s in churn.states]
    assert statuses[-1] == "COMPLETED" and set(statuses[:-1]) <= {"PENDING", "INPROGRESS"}
    model_statuses = [s.status for s in churn.model_states]  # training takes seconds: several polls
    assert model_statuses[0] in ("PENDING", "INPROGRESS") and model_statuses[-1] == "COMPLETED"
    progress = [s.progress for s in churn.model_states]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert churn.ds.status == "COMPLETED" and churn.ds.row_count == 5000


def test_wait_timeout_carries_the_last_state(churn: SimpleNamespace) -> None:
    error = churn.timed_out
    assert error.resource.status in ("PENDING", "INPROGRESS") and error.resource.id in str(error)
    assert "after 0.3 s" in str(error)


def test_datasources_crud_over_a_socket(client: Client, churn: SimpleNamespace, tmp_path: Path) -> None:
    csv = str(small_csv(tmp_path))
    ds = client.datasources.create(csv, name="sdk-small", target="churned", tags={"team": "growth", "tmp": "1"})
    assert ds.status == "PENDING" and ds.id.startswith("ds-") and ds.tags == {"team": "growth", "tmp": "1"}
    ds = client.datasources.wait(ds.id, timeout=60, poll_interval=0.05)
    assert client.datasources.get(ds.id).row_count == 40
    schema = client.datasources.schema(ds)
    assert schema.targetAttributeName == "churned" and schema.attribute("tenure_months") is not None
    assert client.datasources.get(churn.ds.id).data_schema.targetAttributeName == "churned"

    renamed = client.datasources.update(
        ds, name="sdk-small-renamed", tags={"team": "retention", "tmp": None, "owner": "ana"}
    )
    assert renamed.name == "sdk-small-renamed" and renamed.tags == {"team": "retention", "owner": "ana"}
    assert client.datasources.update(ds, tags={"x": "y"}).tags == {"team": "retention", "owner": "ana", "x": "y"}

    page = client.datasources.list(tag="team=retention", limit=5)
    assert isinstance(page, Page) and [d.id for d in page] == [ds.id] and not page.has_more
    assert ds.id in {d.id for d in client.datasources.iter(status="COMPLETED", name_prefix="sdk-")}

    deleted = client.datasources.delete(ds)
    assert deleted.status == "DELETED" and client.datasources.get(ds.id).status == "DELETED"
    assert ds.id not in {d.id for d in client.datasources.iter(name_prefix="sdk-small")}
    assert ds.id in {d.id for d in client.datasources.iter(status="DELETED")}


def test_pages_follow_next_token(client: Client, tmp_path: Path) -> None:
    csv = str(small_csv(tmp_path))
    made = [client.datasources.create(csv, name=f"sdk-page-{i}").id for i in range(5)]
    first = client.datasources.list(name_prefix="sdk-page-", limit=2)
    assert len(first) == 2 and first.has_more
    second = client.datasources.list(name_prefix="sdk-page-", limit=2, next_token=first.next_token)
    assert not {d.id for d in first} & {d.id for d in second}
    every = [d.id for d in client.datasources.iter(name_prefix="sdk-page-", page_size=2)]
    assert every == made[::-1]  # newest first, across three pages, no repeats


def test_models_references_versions_and_aliases(client: Client, churn: SimpleNamespace) -> None:
    v1, v2 = churn.v1, churn.v2
    assert (v1.version, v2.version, v1.status, v2.status) == (1, 2, "COMPLETED", "COMPLETED")
    assert v1.model_type == "BINARY" and v1.classes == ["no", "yes"] and v1.score_threshold == 0.5
    assert client.models.get("sdk-churn:2").id == v2.id
    assert client.models.get("sdk-churn").id == v2.id  # no production alias: the newest COMPLETED
    assert [m.version for m in client.models.versions("sdk-churn")] == [1, 2]
    assert [m.id for m in client.models.iter(name="sdk-churn", page_size=1)] == churn.newest_first
    assert [m.id for m in client.models.list(name="sdk-churn", status="COMPLETED")] == churn.newest_first
    assert client.models.aliases("sdk-churn") == {}

    moved = client.models.set_alias("sdk-churn", "production", 1)
    assert moved.id == v1.id and moved.aliases == ["production"]
    assert client.models.get("sdk-churn").id == v1.id
    assert client.predict("sdk-churn", RISKY).version == 1
    client.models.set_alias("sdk-churn", "candidate", 2)
    assert client.models.aliases("sdk-churn") == {"production": 1, "candidate": 2}
    assert client.models.predict("sdk-churn:candidate", LOYAL).version == 2

    updated = client.models.update("sdk-churn:2", score_threshold=0.3, tags={"stage": "try", "owner": "ana"})
    assert updated.score_threshold == 0.3 and updated.tags == {"stage": "try", "owner": "ana"}
    assert client.models.update(v2, tags={"stage": None}).tags == {"owner": "ana"}
    assert [m.id for m in client.models.iter(tag="owner=ana")] == [v2.id]


def test_predict_one_record_and_a_list(client: Client, churn: SimpleNamespace) -> None:
    one = client.predict(churn.v1.id, RISKY)
    [p] = one.predictions
    assert one.model_id == churn.v1.id and p.predicted_label == implied_label(churn.v1.model_dump(), p.predicted_scores)
    assert set(p.predicted_scores) == {"no", "yes"} and abs(sum(p.predicted_scores.values()) - 1) < 1e-9
    records = [RISKY, LOYAL, {"favourite_colour": "red"}]
    many = client.predict("sdk-churn:1", records=records)
    raw = client.request("POST", "/v1/models/sdk-churn:1/predict", json={"records": records})
    assert [q.model_dump(mode="json", exclude_none=True) for q in many.predictions] == raw["predictions"]
    assert any("favourite_colour" in w for w in many.predictions[2].warnings)
    with pytest.raises(TypeError):
        client.predict("sdk-churn", RISKY, records=[LOYAL])


def test_predict_frame_matches_predict_row_for_row(client: Client, churn: SimpleNamespace) -> None:
    frame = churn_frame(300)
    scored = client.predict_frame("sdk-churn:1", frame, batch_size=128)  # three micro-batches
    assert list(scored.columns) == ["predicted_label", "score_no", "score_yes", "warnings"]
    assert scored.index.equals(frame.index) and scored.index.name == "key"
    assert scored.attrs == {"model_id": churn.v1.id, "model_name": "sdk-churn", "version": 1}
    assert scored["score_yes"].dtype == np.float64
    expected = client.predict("sdk-churn:1", records=records_of(frame)).predictions
    assert scored["predicted_label"].tolist() == [p.predicted_label for p in expected]
    assert np.allclose(scored["score_yes"], [p.predicted_scores["yes"] for p in expected], atol=1e-12)
    assert np.allclose(scored["score_no"] + scored["score_yes"], 1.0)
    assert scored["warnings"].map(len).sum() == sum(len(p.warnings) for p in expected)
    # NaN went as null, i.e. a missing value, not the string "nan" (which would have drawn a warning).
    assert not any("nan" in w.lower() for ws in scored["warnings"] for w in ws)
    assert client.models.predict_frame(churn.v1, frame.head(0)).shape == (0, 4)


def test_evaluations_crud_over_a_socket(client: Client, churn: SimpleNamespace, mlsvc_server: RunningServer) -> None:
    holdout = client.evaluations.get(churn.v1.evaluation_id)
    assert holdout.holdout and holdout.value == churn.v1.metrics["BinaryAUC"]
    ev = client.evaluations.create("sdk-churn:1", churn.ds, name="sdk-eval", tags={"k": "v"})
    assert ev.status == "PENDING" and ev.id.startswith("ev-")
    ev = client.evaluations.wait(ev, timeout=120, poll_interval=0.1)
    assert ev.rows == 5000 and ev.metric == "BinaryAUC"
    # The registered pipeline scoring every row of the file, against its labels, gives the evaluation's AUC.
    model = churn.v1.model_dump(mode="json")
    scores = pipeline_output(registered_pipeline(mlsvc_server, model), model, churn_records(5000))[:, 1]
    labels = pd.read_csv(CHURN, usecols=["churned"])["churned"] == "yes"
    assert ev.value == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert ev.id in [e.id for e in client.evaluations.iter(model_id=churn.v1.id)]
    assert [e.id for e in client.evaluations.list(name_prefix="sdk-eval")] == [ev.id]
    renamed = client.evaluations.update(ev.id, name="sdk-eval-2", tags={"k": None, "n": "1"})
    assert renamed.name == "sdk-eval-2" and renamed.tags == {"n": "1"}
    assert client.evaluations.delete(ev).status == "DELETED"
    assert client.evaluations.list(name_prefix="sdk-eval").items == []


def test_batch_predictions_crud_over_a_socket(
    client: Client, churn: SimpleNamespace, mlsvc_server: RunningServer, tmp_path: Path
) -> None:
    out = tmp_path / "sdk-batch"  # outputs go outside MLSVC_HOME, which holds only mlsvc's own files
    bp = client.batch_predictions.create(
        churn.v1, str(out), datasource_id=churn.ds, name="sdk-batch", tags={"run": "1"}
    )
    assert bp.status == "PENDING" and bp.model_id == churn.v1.id
    bp = client.batch_predictions.wait(bp, timeout=120, poll_interval=0.1)
    assert bp.rows_scored == 5000 and bp.manifest_uri
    assert [b.id for b in client.batch_predictions.iter(model_id=churn.v1.id)] == [bp.id]
    assert client.batch_predictions.update(bp, name="sdk-batch-2", tags={"run": "2"}).tags == {"run": "2"}
    assert client.batch_predictions.get(bp.id).name == "sdk-batch-2"
    assert client.batch_predictions.delete(bp.id).status == "DELETED"
    assert client.batch_predictions.list(model_id=churn.v1.id).items == []


def test_errors_carry_code_message_details_and_request_id(client: Client, churn: SimpleNamespace) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.models.get("no-such-model:3")
    e = missing.value
    assert (e.status_code, e.code, e.details) == (404, "not_found", {"ref": "no-such-model:3"})
    assert "no-such-model:3" in e.message and e.request_id.startswith("req-")

    with pytest.raises(ConflictError) as conflict:
        client.datasources.create(str(CHURN), id=churn.ds.id, name="another name")
    assert conflict.value.status_code == 409 and conflict.value.code == "conflict"

    with pytest.raises(ValidationError) as invalid:
        client.models.update("sdk-churn:1", score_threshold=1.5)
    assert invalid.value.status_code == 422
    assert any("score_threshold" in p for p in invalid.value.details["problems"])

    with pytest.raises(PayloadTooLargeError):
        client.predict("sdk-churn:1", records=[{}] * 1001)

    with pytest.raises(ValueError):
        client.models.get("")  # would otherwise list
    with pytest.raises(TypeError, match="model_id"):
        client.datasources.list(model_id="x")


def test_failed_resource_and_not_ready(client: Client, tmp_path: Path) -> None:
    bad = client.datasources.create(str(small_csv(tmp_path)), target="no_such_column")
    with pytest.raises(ResourceFailedError) as failed:
        client.datasources.wait(bad, timeout=60, poll_interval=0.05)
    assert failed.value.resource.status == "FAILED" and "no_such_column" in failed.value.resource.message
    assert "no_such_column" in str(failed.value)
    with pytest.raises(NotReadyError) as not_ready:
        client.models.create("sdk-never", bad)
    assert not_ready.value.status_code == 409 and not_ready.value.details == {"id": bad.id, "status": "FAILED"}
    with pytest.raises(NotReadyError):
        client.datasources.schema(bad)


def test_retries_connection_errors_and_503_with_one_request_id(mlsvc_server: RunningServer) -> None:
    flaky = Flaky(httpx.HTTPTransport(), "connect", "503", "connect")
    with Client(mlsvc_server.url, transport=flaky, backoff=0.01) as c:
        assert c.health() == {"status": "ok"}
        assert len(flaky.seen) == 4 and len(set(flaky.request_ids())) == 1
        c.health()
        assert len(set(flaky.request_ids())) == 2  # a new logical call, a new id


def test_a_create_whose_answer_was_lost_makes_one_resource(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    flaky = Flaky(httpx.HTTPTransport(), "lost", "503")
    with Client(mlsvc_server.url, transport=flaky, backoff=0.01) as c:
        ds = c.datasources.create(str(small_csv(tmp_path)), name="sdk-retried-create")
        assert [r.method for r in flaky.seen] == ["POST"] * 3
        assert len({r.content for r in flaky.seen}) == 1  # the same body, so the same SDK-made id
        assert [d.id for d in c.datasources.iter(name_prefix="sdk-retried-create")] == [ds.id]


def test_429_honours_retry_after_and_other_4xx_are_not_retried(mlsvc_server: RunningServer) -> None:
    policy = RetryPolicy(backoff=0.01)
    assert policy.after_response(0, httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    assert policy.after_response(0, httpx.Response(503, headers={"Retry-After": "600"})) < 0.02  # capped: backoff
    assert policy.after_response(policy.max_retries, httpx.Response(503)) is None
    assert all(policy.after_response(0, httpx.Response(s)) is None for s in (400, 401, 404, 409, 422, 500))
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and parse_retry_after("soon") is None

    flaky = Flaky(httpx.HTTPTransport(), "429:0.2")
    with Client(mlsvc_server.url, transport=flaky, backoff=0.01) as c:
        assert c.datasources.list(limit=1) is not None
        assert len(flaky.seen) == 2
        with pytest.raises(NotFoundError):
            c.datasources.get("ds-missing")
        assert len(flaky.seen) == 3  # one attempt: a 404 is an answer, not a failure


def test_retries_give_up_with_a_connection_error(mlsvc_server: RunningServer) -> None:
    flaky = Flaky(httpx.HTTPTransport(), *["connect"] * 3)
    with Client(mlsvc_server.url, transport=flaky, max_retries=2, backoff=0.01) as c:
        with pytest.raises(APIConnectionError) as info:
            c.models.get("sdk-churn")
        assert len(flaky.seen) == 3 and "after 3 attempts" in str(info.value)
        assert info.value.request_id == flaky.request_ids()[0]
    flaky = Flaky(httpx.HTTPTransport(), "503", "503")
    with Client(mlsvc_server.url, transport=flaky, max_retries=1, backoff=0.01) as c:
        with pytest.raises(ServiceUnavailableError) as unavailable:
            c.health()
        assert unavailable.value.status_code == 503 and "upstream unavailable" in unavailable.value.message


def test_escape_hatches_and_configuration(
    client: Client, mlsvc_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.request("GET", "/v1/models", params={"name": "sdk-churn", "limit": 1})["next_token"]
    assert "mlsvc_predictions_total" in client.metrics()
    monkeypatch.setenv("MLSVC_URL", mlsvc_server.url)
    with Client() as from_env:
        assert from_env.base_url == mlsvc_server.url and from_env.health() == {"status": "ok"}
    with Client(api_key="secret") as keyed:
        assert "secret" not in repr(keyed)


def test_the_sdk_knows_every_error_code() -> None:
    assert set(BY_CODE) == {code.value for code in ErrorCode}


@pytest.mark.anyio
async def test_async_client_over_a_socket(
    client: Client, churn: SimpleNamespace, mlsvc_server: RunningServer, tmp_path: Path
) -> None:
    async with AsyncClient(mlsvc_server.url, timeout=30) as c:
        assert await c.health() == {"status": "ok"}
        ds = await c.datasources.create(
            str(small_csv(tmp_path)), name="a-socket", target="churned", tags={"via": "socket"}
        )
        ds = await c.datasources.wait(ds, timeout=60, poll_interval=0.05)
        assert ds.row_count == 40 and (await c.datasources.schema(ds)).targetAttributeName == "churned"
        assert [d.id async for d in c.datasources.iter(tag="via=socket")] == [ds.id]
        answer = await c.predict(churn.v1.id, records=[RISKY, LOYAL])
        assert answer == client.predict(churn.v1.id, records=[RISKY, LOYAL])  # the same answer as the sync client
        frame = churn_frame(30)
        pd.testing.assert_frame_equal(await c.predict_frame(churn.v1, frame), client.predict_frame(churn.v1, frame))
        with pytest.raises(NotFoundError) as missing:
            await c.models.get("no-such-model:3")
        assert missing.value.status_code == 404 and missing.value.request_id.startswith("req-")
        with pytest.raises(ConflictError):
            await c.datasources.create(str(small_csv(tmp_path)), id=ds.id, name="another name")
        assert (await c.datasources.delete(ds)).status == "DELETED"


def test_deleting_a_version_leaves_the_others(client: Client, churn: SimpleNamespace) -> None:
    gone = client.models.delete("sdk-churn:candidate", force=True)
    assert gone.id == churn.v2.id and gone.status == "DELETED"
    assert [m.version for m in client.models.versions("sdk-churn")] == [1]
    assert client.models.aliases("sdk-churn") == {"production": 1}


# ===================== AsyncClient in-process through httpx.ASGITransport =====================


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class InProcess:
    app: FastAPI
    settings: Settings
    folder: Path

    def client(self, **options: Any) -> AsyncClient:
        transport = options.pop("transport", None) or httpx.ASGITransport(app=self.app)
        return AsyncClient("http://localhost", transport=transport, backoff=0.01, **options)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """The app in this process over its own store, with one job worker on a thread."""
    folder = tmp_path_factory.mktemp("sdk-inproc")  # the data; mlsvc's home inside it holds only its own files
    settings = settings_for(folder / "home")
    app = create_app(settings)
    worker = Worker(settings, app.state.service.planes.metadata)
    thread = threading.Thread(target=worker.run_forever, name="sdk-test-worker", daemon=True)
    thread.start()
    yield InProcess(app, settings, folder)
    worker.stop()
    thread.join(30)


@pytest.fixture(scope="module")
async def trained(inproc: InProcess, anyio_backend: str) -> AsyncIterator[SimpleNamespace]:
    async with inproc.client() as c:
        ds = await c.datasources.wait(await c.datasources.create(str(CHURN), name="churn"), poll_interval=0.05)
        model = await c.models.wait(await c.models.create("churn", ds, time_budget_s=3), poll_interval=0.1, timeout=180)
        yield SimpleNamespace(ds=ds, model=model)


@pytest.mark.anyio
async def test_async_datasources(inproc: InProcess, capsys: pytest.CaptureFixture[str]) -> None:
    csv = str(small_csv(inproc.folder, "async.csv"))
    async with inproc.client() as c:
        ds = await c.datasources.create(csv, name="a-small", tags={"team": "growth", "tmp": "1"})
        seen: list[str] = []
        ds = await c.datasources.wait(
            ds.id, poll_interval=0.02, on_progress=lambda r: seen.append(r.status), progress=True
        )
        assert ds.row_count == 40 and seen[-1] == "COMPLETED"
        bar = capsys.readouterr().err  # progress=True drew a bar on stderr, ending at the final state
        assert f"{ds.id} COMPLETED" in bar and "100%" in bar
        assert (await c.datasources.get(ds)).id == ds.id
        assert (await c.datasources.schema(ds.id)).attribute("contract").attributeType == "CATEGORICAL"
        renamed = await c.datasources.update(ds, name="a-renamed", tags={"tmp": None, "team": "retention"})
        assert renamed.name == "a-renamed" and renamed.tags == {"team": "retention"}

        made = [(await c.datasources.create(csv, name=f"a-page-{i}")).id for i in range(3)]
        page = await c.datasources.list(name_prefix="a-page-", limit=2)
        assert len(page) == 2 and page.has_more
        assert [d.id async for d in c.datasources.iter(name_prefix="a-page-", page_size=2)] == made[::-1]
        assert [d.id async for d in c.datasources.iter(tag="team=retention")] == [ds.id]

        assert (await c.datasources.delete(ds)).status == "DELETED"
        assert [d.id async for d in c.datasources.iter(status="DELETED")] == [ds.id]


@pytest.mark.anyio
async def test_async_models_and_predictions(inproc: InProcess, trained: SimpleNamespace) -> None:
    model = trained.model
    async with inproc.client() as c:
        assert model.status == "COMPLETED" and model.version == 1 and model.aliases == ["production"]
        assert (await c.models.get("churn:production")).id == model.id
        assert [m.id for m in await c.models.versions("churn")] == [model.id]
        assert [m.id async for m in c.models.iter(name="churn")] == [model.id]
        assert [m.id for m in await c.models.list(status="COMPLETED")] == [model.id]
        await c.models.set_alias("churn", "candidate", 1)
        assert await c.models.aliases("churn") == {"production": 1, "candidate": 1}
        updated = await c.models.update(model, score_threshold=0.4, tags={"owner": "ana"})
        assert updated.score_threshold == 0.4 and updated.tags == {"owner": "ana"}

        answer = await c.predict("churn", records=[RISKY, LOYAL])
        labels = [implied_label(updated.model_dump(), p.predicted_scores) for p in answer.predictions]
        assert [p.predicted_label for p in answer.predictions] == labels  # at the threshold just set
        assert (await c.models.predict("churn:1", RISKY)).model_id == model.id
        frame = churn_frame(50)
        scored = await c.predict_frame("churn:candidate", frame, batch_size=20)
        expected = (await c.predict(model.id, records=records_of(frame))).predictions
        assert scored.index.equals(frame.index)
        assert scored["predicted_label"].tolist() == [p.predicted_label for p in expected]
        assert list((await c.models.predict_frame(model, frame.head(3))).columns) == list(scored.columns)
        assert "mlsvc_predictions_total" in await c.metrics()
        assert [m["id"] for m in (await c.request("GET", "/v1/models", params={"name": "churn"}))["items"]] == [
            model.id
        ]


@pytest.mark.anyio
async def test_async_evaluations_and_batch_predictions(inproc: InProcess, trained: SimpleNamespace) -> None:
    async with inproc.client() as c:
        ev = await c.evaluations.create("churn", trained.ds.id, name="a-eval", tags={"k": "v"})
        ev = await c.wait(ev, poll_interval=0.05, timeout=120)
        assert ev.rows == 5000 and ev.metric == "BinaryAUC"
        assert [e.id async for e in c.evaluations.iter(name_prefix="a-eval")] == [ev.id]
        assert (await c.evaluations.list(model_id=trained.model.id)).items
        assert (await c.evaluations.update(ev, name="a-eval-2", tags={"k": None})).tags == {}
        assert (await c.evaluations.get(ev.id)).name == "a-eval-2"
        assert (await c.evaluations.delete(ev.id)).status == "DELETED"

        csv = str(small_csv(inproc.folder, "to-score.csv"))
        bp = await c.batch_predictions.create(
            "churn", str(inproc.folder / "scores"), data_uri=csv, row_id="customer_id", name="a-batch"
        )
        bp = await c.batch_predictions.wait(bp, poll_interval=0.05, timeout=120)
        assert bp.rows_scored == 40 and bp.outputs
        assert [b.id async for b in c.batch_predictions.iter(model_id=trained.model.id)] == [bp.id]
        assert [b.id for b in await c.batch_predictions.list(name_prefix="a-batch")] == [bp.id]
        assert (await c.batch_predictions.update(bp, tags={"run": "1"})).tags == {"run": "1"}
        assert (await c.batch_predictions.get(bp)).tags == {"run": "1"}
        assert (await c.batch_predictions.delete(bp)).status == "DELETED"

        gone = await c.models.delete("churn:1", force=True)
        assert gone.status == "DELETED" and await c.models.versions("churn") == []
        with pytest.raises(NotFoundError):
            await c.predict("churn", RISKY)


@pytest.mark.anyio
async def test_async_errors_and_failures(inproc: InProcess) -> None:
    async with inproc.client() as c:
        with pytest.raises(NotFoundError) as missing:
            await c.evaluations.get("ev-nope")
        assert missing.value.status_code == 404 and "ev-nope" in missing.value.message
        with pytest.raises(ValidationError) as invalid:
            await c.models.create("bad name!", "ds-x")
        assert invalid.value.details["problems"]
        csv = str(small_csv(inproc.folder, "bad.csv"))
        bad = await c.datasources.create(csv, id="a-bad", target="no_such_column")
        with pytest.raises(ResourceFailedError) as failed:
            await c.datasources.wait(bad, poll_interval=0.02, timeout=60)
        assert failed.value.resource.status == "FAILED" and "no_such_column" in failed.value.resource.message
        with pytest.raises(ConflictError):
            await c.datasources.create(csv, id="a-bad", target="churned")
        assert (await c.datasources.create(csv, id="a-bad", target="no_such_column")).id == "a-bad"  # a retry
        with pytest.raises(NotReadyError) as not_ready:
            await c.datasources.schema(bad)
        assert not_ready.value.code == "not_ready" and "FAILED" in not_ready.value.message


@pytest.mark.anyio
async def test_async_retries_share_the_policy(inproc: InProcess) -> None:
    flaky = Flaky(httpx.ASGITransport(app=inproc.app), "connect", "lost", "503")
    async with inproc.client(transport=flaky) as c:
        ds = await c.datasources.create(str(CHURN), name="a-retried", compute_statistics=False)
        assert len(flaky.seen) == 4 and len(set(flaky.request_ids())) == 1
        assert [d.id async for d in c.datasources.iter(name_prefix="a-retried")] == [ds.id]


@pytest.mark.anyio
async def test_api_key_and_wait_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings_for(tmp_path, api_key="s3cret"))  # no worker: what is created stays PENDING
    transport = httpx.ASGITransport(app=app)
    monkeypatch.delenv("MLSVC_API_KEY", raising=False)
    async with AsyncClient("http://localhost", transport=transport) as anonymous:
        assert await anonymous.health() == {"status": "ok"}  # health needs no key
        with pytest.raises(UnauthenticatedError) as denied:
            await anonymous.datasources.list()
        assert denied.value.status_code == 401 and "API key" in denied.value.message
    async with AsyncClient("http://localhost", api_key="wrong", transport=transport) as wrong:
        with pytest.raises(UnauthenticatedError):
            await wrong.models.get("x")
    monkeypatch.setenv("MLSVC_API_KEY", "s3cret")
    async with AsyncClient("http://localhost", transport=transport) as keyed:
        ds = await keyed.datasources.create(str(CHURN))
        assert [d.id for d in await keyed.datasources.list()] == [ds.id]
        with pytest.raises(WaitTimeoutError) as timed_out:
            await keyed.datasources.wait(ds, timeout=0.2, poll_interval=0.05)
        assert timed_out.value.resource.status == "PENDING"
