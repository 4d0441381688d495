"""The promotion rule, written once for every model type, against a real metadata store: the first version, a
better or worse challenger (either direction of metric), ties, a production version that cannot be scored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlsvc.config import Settings
from mlsvc.jobs.context import JobContext
from mlsvc.metadata import Claim, Document
from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.planes import open_planes
from mlsvc.training.promotion import Challenger, promote

NAME = "churn"


def _model(store: SqlMetadataStore, version: int, status: str = "COMPLETED", **fields: Any) -> Document:
    now = datetime.now(UTC)
    record = {
        "id": f"ml-{version}",
        "name": NAME,
        "version": version,
        "datasource_id": "ds-1",
        "status": status,
        "message": "",
        "progress": 1.0,
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    created, _ = store.create("model", record, record["id"], {}, None)
    return created


@pytest.fixture
def ctx(store: SqlMetadataStore, store_url: str, tmp_path: Path) -> Iterator[JobContext]:
    """The job of version 2, with version 1 production (COMPLETED, scoring 0.80 in the tests below)."""
    _model(store, 1)
    store.set_alias(NAME, "production", 1)
    _model(store, 2, status="INPROGRESS")
    base = Settings.from_env()
    planes = open_planes(Settings(**{**base.__dict__, "home": tmp_path, "database_url": store_url}), store)
    yield JobContext(planes, Claim(1, "model.train", "ml-2", 1, "test"))


def _challenge(score: float, higher_is_better: bool = True) -> Challenger:
    metric = "AUC" if higher_is_better else "RMSE"
    return Challenger(2, score, metric, higher_is_better, "on the same held-out rows")


def _production(score: float) -> Any:
    def incumbent_score(incumbent: Document) -> float:
        assert incumbent["version"] == 1
        return score

    return incumbent_score


def test_a_better_challenger_becomes_production_and_says_by_how_much(ctx: JobContext) -> None:
    promotion = promote(ctx, ctx.resource, _challenge(0.85), _production(0.80))
    assert promotion == {
        "promoted": True,
        "reason": "AUC 0.8500 vs 0.8000 for production v1 on the same held-out rows",
        "previous_version": 1,
    }
    assert ctx.aliases == [(NAME, "production", 2)] and len(ctx.after_complete) == 1


def test_a_worse_challenger_leaves_production_where_it_is(ctx: JobContext) -> None:
    promotion = promote(ctx, ctx.resource, _challenge(0.75), _production(0.80))
    assert promotion["promoted"] is False and promotion["production_version"] == 1
    assert ctx.aliases == [] and ctx.after_complete == []


def test_a_tie_goes_to_the_challenger(ctx: JobContext) -> None:
    assert promote(ctx, ctx.resource, _challenge(0.80), _production(0.80))["promoted"] is True


@pytest.mark.parametrize(("score", "promoted"), [(9.0, True), (11.0, False)])
def test_when_lower_is_better_a_lower_score_wins(ctx: JobContext, score: float, promoted: bool) -> None:
    promotion = promote(ctx, ctx.resource, _challenge(score, higher_is_better=False), _production(10.0))
    assert promotion["promoted"] is promoted and promotion["reason"].startswith(f"RMSE {score:.4f} vs 10.0000")


def test_a_production_version_that_cannot_score_the_rows_loses(ctx: JobContext) -> None:
    def cannot(incumbent: Document) -> float:
        raise ValueError("it predicts other classes")

    promotion = promote(ctx, ctx.resource, _challenge(0.1), cannot)
    assert promotion == {
        "promoted": True,
        "reason": "production v1 could not score these rows (it predicts other classes)",
    }
    assert ctx.aliases == [(NAME, "production", 2)]


def test_the_first_version_of_a_name_becomes_production_without_a_contest(
    ctx: JobContext, store: SqlMetadataStore
) -> None:
    store.delete_alias(NAME, "production")
    promotion = promote(ctx, ctx.resource, _challenge(0.1), _production(0.99))
    assert promotion == {"promoted": True, "reason": f"the first production version of '{NAME}'"}


def test_a_deleted_production_version_does_not_count(ctx: JobContext, store: SqlMetadataStore) -> None:
    store.update("model", "ml-1", {"status": "DELETED"})
    assert promote(ctx, ctx.resource, _challenge(0.1), _production(0.99))["promoted"] is True


def test_promote_never_keeps_production(ctx: JobContext) -> None:
    model = {**ctx.resource, "promote": "never"}
    assert promote(ctx, model, _challenge(0.99), _production(0.1)) == {
        "promoted": False,
        "reason": "promote is 'never'",
    }
    assert ctx.aliases == []
