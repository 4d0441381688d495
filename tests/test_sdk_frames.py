"""`predict_frame` sends each column as the model's schema types it: codes that `pd.read_csv` read as integers
(the churn example's `region` 02139 read as 2139) go as the text the training data held, zero-padded to its width;
where the training data's statistics cannot tell, the SDK warns and says how to read the CSV instead."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsvc.client import AsyncClient, Client
from mlsvc.client._frames import code_width
from tests.servers import REPO, RunningServer

CHURN = REPO / "datasources" / "churn.csv"
ROWS = 300


class Recording(httpx.HTTPTransport):
    """The real transport, keeping the records of every prediction request: what the server was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/predict"):
            self.records.extend(json.loads(request.content)["records"])
        return super().handle_request(request)


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/predict"):
            self.records.extend(json.loads(request.content)["records"])
        return await super().handle_async_request(request)


@pytest.fixture(scope="module")
def client(mlsvc_server: RunningServer) -> Iterator[Client]:
    with Client(mlsvc_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def models(client: Client, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A churn model trained with statistics (region's codes are 5 digits, some with leading zeros), and one on
    a datasource without statistics, trained side by side."""
    folder = tmp_path_factory.mktemp("frames")
    small = folder / "churn-600.csv"
    pd.read_csv(CHURN, dtype=str, nrows=600).to_csv(small, index=False)
    with_stats = client.datasources.create(str(CHURN), name="frames-churn")
    without = client.datasources.create(str(small), name="frames-nostats", compute_statistics=False)
    with_stats, without = (client.datasources.wait(ds, timeout=120, poll_interval=0.1) for ds in (with_stats, without))
    assert without.statistics is None
    made = [
        client.models.create("frames-churn", with_stats, time_budget_s=3),
        client.models.create("frames-nostats", without, time_budget_s=3, target="churned"),
    ]
    padded, unknown = (client.models.wait(m, timeout=180, poll_interval=0.2) for m in made)
    return SimpleNamespace(padded=padded, unknown=unknown)


def as_read(rows: int = ROWS, **options: Any) -> pd.DataFrame:
    """The churn rows as `pd.read_csv` gives them, without the target, every 5th region missing."""
    frame = pd.read_csv(CHURN, nrows=rows, **options).drop(columns=["churned", "customer_id"])
    frame.loc[frame.index[::5], "region"] = None
    return frame


def test_codes_read_as_numbers_go_as_the_training_data_wrote_them(mlsvc_server: RunningServer, models: Any) -> None:
    frame = as_read()
    assert frame["region"].dtype == np.float64  # 02139 read as 2139.0, since some are missing
    written = as_read(dtype={"region": str})["region"]
    transport = Recording()
    with Client(mlsvc_server.url, transport=transport) as client, warnings.catch_warnings():
        warnings.simplefilter("error")  # the statistics tell the width: nothing to warn about
        scored = client.predict_frame("frames-churn", frame)
        as_text = client.predict_frame("frames-churn", as_read(dtype={"region": str}))
    sent = [r["region"] for r in transport.records[:ROWS]]
    assert sent == [None if pd.isna(v) else v for v in written]
    assert "02139" in sent or "07030" in sent  # the padded codes are among the rows
    pd.testing.assert_frame_equal(scored, as_text)  # scored as if the CSV had been read as text
    assert frame["region"].dtype == np.float64  # the caller's frame is left as it was


def test_an_integer_column_is_padded_too(mlsvc_server: RunningServer, models: Any) -> None:
    frame = pd.read_csv(CHURN, nrows=50).drop(columns=["churned", "customer_id"])
    assert frame["region"].dtype == np.int64
    transport = Recording()
    with Client(mlsvc_server.url, transport=transport) as client:
        client.predict_frame("frames-churn", frame)
    written = pd.read_csv(CHURN, nrows=50, dtype={"region": str})["region"].tolist()
    assert [r["region"] for r in transport.records] == written


def test_warns_when_the_training_data_cannot_tell(mlsvc_server: RunningServer, models: Any) -> None:
    frame = as_read(rows=40)
    transport = Recording()
    with Client(mlsvc_server.url, transport=transport) as client:
        with pytest.warns(UserWarning, match=r"'region'.*CATEGORICAL.*dtype=\{'region': str\}") as caught:
            client.predict_frame("frames-nostats", frame)
        assert caught[0].filename == __file__  # the warning points at the caller's line
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # read as text: nothing to guess, nothing to warn about
            client.predict_frame("frames-nostats", as_read(rows=40, dtype={"region": str}))
    digits = [r["region"] for r in transport.records[:40]]
    assert digits == [None if pd.isna(v) else str(int(v)) for v in frame["region"]]  # 2139, not 2139.0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_async_client_types_columns_the_same(mlsvc_server: RunningServer, models: Any) -> None:
    transport = AsyncRecording()
    async with AsyncClient(mlsvc_server.url, transport=transport) as client:
        scored = await client.predict_frame("frames-churn", as_read())
    with Client(mlsvc_server.url) as client:
        pd.testing.assert_frame_equal(scored, client.predict_frame("frames-churn", as_read()))
    written = as_read(dtype={"region": str})["region"]
    assert [r["region"] for r in transport.records] == [None if pd.isna(v) else v for v in written]


def _levels(*values: str, complete: bool = False) -> dict[str, Any]:
    return {
        "top_values": [{"value": v, "count": 1} for v in values],
        "top_counts_exact": True,
        "distinct": len(values) if complete else len(values) + 10,
    }


@pytest.mark.parametrize(
    ("summary", "width"),
    [
        (_levels("33101", "02139", "07030"), 5),  # zero-padded, one width: pad to it
        (_levels("1", "2", "10"), 0),  # digits of several widths, no zeros: an integer is the code
        (_levels("33101", "48201", complete=True), 0),  # every level listed, none with zeros
        (_levels("33101", "48201"), None),  # rarer codes unseen: they might have had zeros
        (_levels("007", "0042"), None),  # zeros, but no one width to pad to
        (_levels("two-year", "monthly"), 0),  # not digit codes
        (None, None),  # no statistics
    ],
)
def test_the_width_read_from_statistics(summary: dict[str, Any] | None, width: int | None) -> None:
    assert code_width(summary) == width
