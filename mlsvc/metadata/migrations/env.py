"""Alembic environment: runs migrations on the connection mlsvc hands over."""

from __future__ import annotations

from alembic import context

from mlsvc.metadata.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("mlsvc migrations run through mlsvc.metadata.migrate(), which passes a connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
