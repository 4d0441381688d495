"""The metadata store's tables; ORM-free SQLAlchemy Core so rows never leave the store as ORM objects."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def _resource_columns() -> list[Column]:
    """Columns every resource table has; the resource-specific fields live in ``doc``."""
    return [
        Column("id", String(64), primary_key=True),
        Column("name", String(256), nullable=False),
        Column("status", String(16), nullable=False),
        Column("message", Text, nullable=False, default=""),
        Column("progress", Float, nullable=False, default=0.0),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("doc", JSON, nullable=False),
    ]


datasources = Table(
    "datasources",
    metadata,
    *_resource_columns(),
    Column("data_uri", Text, nullable=False),
    Index("ix_datasources_created", "created_at", "id"),
)

models = Table(
    "models",
    metadata,
    *_resource_columns(),
    Column("version", Integer, nullable=True),
    Column("datasource_id", String(64), nullable=False),
    UniqueConstraint("name", "version", name="uq_models_name_version"),
    Index("ix_models_created", "created_at", "id"),
)

evaluations = Table(
    "evaluations",
    metadata,
    *_resource_columns(),
    Column("model_id", String(64), nullable=False),
    Column("datasource_id", String(64), nullable=False),
    Index("ix_evaluations_created", "created_at", "id"),
)

batch_predictions = Table(
    "batch_predictions",
    metadata,
    *_resource_columns(),
    Column("model_id", String(64), nullable=False),
    # Its own column so /metrics can sum it in the database instead of reading every document.
    Column("rows_scored", Integer, nullable=False, server_default="0"),
    Index("ix_batch_predictions_created", "created_at", "id"),
)

tags = Table(
    "tags",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
    Index("ix_tags_key_value", "kind", "key", "value"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_jobs_state_id", "state", "id"),
)

# Every load refused because a model's files did not match what was recorded at registration, by any process.
integrity_failures = Table(
    "integrity_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("model_uri", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("problems", JSON, nullable=False),
)

RESOURCE_TABLES: dict[str, Table] = {
    "datasource": datasources,
    "model": models,
    "evaluation": evaluations,
    "batch_prediction": batch_predictions,
}
