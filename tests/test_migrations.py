"""The store's migrations on SQLite and PostgreSQL: a database made at revision 0001, holding a batch prediction
from before 0002, opened by today's code, keeps its figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from mlsvc.metadata.migrate import alembic_config
from mlsvc.metadata.sql import SqlMetadataStore
from mlsvc.server.app import create_app
from tests.inprocess import serving, settings_for

# The batch_predictions table as revision 0001 made it: the rows-scored figure lived only in the document.
OLD_BATCH_PREDICTIONS = sa.table(
    "batch_predictions",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("status", sa.String),
    sa.column("message", sa.Text),
    sa.column("progress", sa.Float),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("request_hash", sa.String),
    sa.column("doc", sa.JSON),
    sa.column("model_id", sa.String),
)


def _database_at_0001(url: str) -> None:
    engine = sa.create_engine(url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    now = datetime.now(UTC)
    rows = [("bp-old", 1234, "COMPLETED"), ("bp-none", None, "FAILED"), ("bp-zero", 0, "COMPLETED")]
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
        for rid, scored, status in rows:
            doc = {
                "id": rid,
                "model_id": "ml-1",
                "status": status,
                **({} if scored is None else {"rows_scored": scored}),
            }
            conn.execute(
                OLD_BATCH_PREDICTIONS.insert().values(
                    id=rid,
                    name=rid,
                    status=status,
                    message="",
                    progress=1.0,
                    created_at=now,
                    updated_at=now,
                    request_hash="h",
                    doc=doc,
                    model_id="ml-1",
                )
            )
    engine.dispose()


def test_0002_carries_the_rows_scored_figures_over(store_url: str, tmp_path: Path) -> None:
    _database_at_0001(store_url)
    store = SqlMetadataStore(store_url)  # today's code opens the database: it migrates to the newest revision
    store.dispose()
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
        figures = {
            rid: scored for rid, scored in conn.execute(sa.text("SELECT id, rows_scored FROM batch_predictions"))
        }
    engine.dispose()
    assert figures == {"bp-old": 1234, "bp-none": 0, "bp-zero": 0}
    # And /metrics, which sums the column, reports them.
    app = create_app(settings_for(tmp_path / "home", database_url=store_url))
    try:
        with serving(app) as url:
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        app.state.service.close()
    assert "mlsvc_batch_rows_scored 1234.0" in metrics.splitlines()
