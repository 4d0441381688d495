"""The metadata store on SQLite and PostgreSQL: resources, idempotent creates, pages, filters, tags, aliases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata.sql import SqlMetadataStore, utcnow


def _record(rid: str, name: str = "n", offset_s: int = 0, **extra: object) -> dict[str, object]:
    now = utcnow() + timedelta(seconds=offset_s)
    return {
        "id": rid,
        "name": name,
        "status": "PENDING",
        "message": "",
        "progress": 0.0,
        "created_at": now,
        "updated_at": now,
        "data_uri": f"/data/{rid}.csv",
        "schema": None,
        **extra,
    }


def test_create_get_and_doc_fields_round_trip(store: SqlMetadataStore) -> None:
    row, created = store.create("datasource", _record("a", target="churned"), "h1", {"team": "x"}, None)
    assert created
    got = store.get("datasource", "a")
    assert got["target"] == "churned" and got["tags"] == {"team": "x"} and got["data_uri"] == "/data/a.csv"
    assert got["created_at"].tzinfo is not None
    assert row == got


def test_same_id_same_request_returns_existing_and_different_request_conflicts(store: SqlMetadataStore) -> None:
    store.create("datasource", _record("a"), "h1", {}, "datasource.create")
    again, created = store.create("datasource", _record("a", name="other"), "h1", {}, "datasource.create")
    assert not created and again["name"] == "n"
    with pytest.raises(MlsvcError) as info:
        store.create("datasource", _record("a"), "h2", {}, "datasource.create")
    assert info.value.code == ErrorCode.CONFLICT
    from mlsvc.metadata.queue import SqlJobQueue

    assert SqlJobQueue(store, 5).claim("w") is not None
    assert SqlJobQueue(store, 5).claim("w") is None  # the retry did not enqueue a second job


def test_unknown_id_is_not_found(store: SqlMetadataStore) -> None:
    with pytest.raises(MlsvcError) as info:
        store.get("model", "nope")
    assert info.value.code == ErrorCode.NOT_FOUND


def test_pages_follow_next_token_newest_first_without_gaps_or_repeats(store: SqlMetadataStore) -> None:
    for i in range(7):
        store.create("datasource", _record(f"d{i}", offset_s=i // 2), f"h{i}", {}, None)
    seen, token = [], None
    while True:
        items, token = store.list("datasource", limit=3, next_token=token)
        seen += [i["id"] for i in items]
        if token is None:
            break
    assert sorted(seen) == [f"d{i}" for i in range(7)] and len(seen) == 7
    created = [store.get("datasource", i)["created_at"] for i in seen]
    assert created == sorted(created, reverse=True)


def test_filters_status_name_prefix_and_tags(store: SqlMetadataStore) -> None:
    store.create("datasource", _record("a", name="churn_2024"), "h", {"env": "prod"}, None)
    store.create("datasource", _record("b", name="churn%x"), "h", {"env": "dev"}, None)
    store.create("datasource", _record("c", name="fraud"), "h", {}, None)
    store.update("datasource", "c", {"status": "DELETED"})
    names = lambda **kw: sorted(i["id"] for i in store.list("datasource", **kw)[0])  # noqa: E731
    assert names() == ["a", "b"]
    assert names(name_prefix="churn%") == ["b"]  # LIKE wildcards in a prefix are literal
    assert names(name_prefix="churn_") == ["a"]
    assert names(tag=("env", "prod")) == ["a"]
    assert names(tag=("env", None)) == ["a", "b"]
    assert names(status="DELETED") == ["c"]


def test_bad_token_is_a_clear_error(store: SqlMetadataStore) -> None:
    with pytest.raises(MlsvcError) as info:
        store.list("datasource", next_token="garbage!")
    assert info.value.code == ErrorCode.INVALID_REQUEST


def test_tags_merge_and_remove(store: SqlMetadataStore) -> None:
    store.create("model", _record("m", datasource_id="d", version=None), "h", {"a": "1", "b": "2"}, None)
    store.set_tags("model", "m", {"a": None, "c": "3"})
    assert store.get("model", "m")["tags"] == {"b": "2", "c": "3"}


def test_versions_aliases_and_latest_completed(store: SqlMetadataStore) -> None:
    for v in (1, 2, 3):
        store.create("model", _record(f"m{v}", name="churn", datasource_id="d"), "h", {}, None)
        store.update("model", f"m{v}", {"version": v, "status": "COMPLETED" if v < 3 else "FAILED"})
    assert store.latest_completed_model("churn")["id"] == "m2"
    assert store.model_by_version("churn", 3)["id"] == "m3"
    store.set_alias("churn", "production", 1)
    store.set_alias("churn", "production", 2)
    assert store.alias_version("churn", "production") == 2
    assert store.get("model", "m2")["aliases"] == ["production"]
    assert store.get("model", "m1")["aliases"] == []
    store.delete_alias("churn", "production")
    assert store.alias_version("churn", "production") is None


def test_version_is_unique_per_name(store: SqlMetadataStore) -> None:
    from sqlalchemy.exc import IntegrityError

    store.create("model", _record("m1", name="churn", datasource_id="d"), "h", {}, None)
    store.create("model", _record("m2", name="churn", datasource_id="d"), "h", {}, None)
    store.update("model", "m1", {"version": 1})
    with pytest.raises(IntegrityError):
        store.update("model", "m2", {"version": 1})


def test_migrations_are_idempotent(store_url: str) -> None:
    SqlMetadataStore(store_url).dispose()
    again = SqlMetadataStore(store_url)  # a second start applies nothing and loses nothing
    again.create("datasource", _record("a"), "h", {}, None)
    SqlMetadataStore(store_url).dispose()
    assert again.get("datasource", "a")["id"] == "a"
    again.dispose()


def test_same_request_tells_a_retry_from_a_conflict(store: SqlMetadataStore) -> None:
    assert store.same_request("model", "m", "h1") is None
    store.create("model", _record("m", datasource_id="d"), "h1", {}, None)
    assert store.same_request("model", "m", "h1")["id"] == "m"
    with pytest.raises(MlsvcError) as info:
        store.same_request("model", "m", "h2")
    assert info.value.code == ErrorCode.CONFLICT


def test_batch_rows_scored_are_summed_by_the_database(store: SqlMetadataStore) -> None:
    for i, rows in enumerate((5000, 300)):
        store.create("batch_prediction", _record(f"b{i}", model_id="m", output_uri="/o"), "h", {}, None)
        store.update("batch_prediction", f"b{i}", {"rows_scored": rows})
    assert store.batch_rows_scored() == 5300 and store.get("batch_prediction", "b0")["rows_scored"] == 5000
