"""batch rows scored column

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:07:06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rows_scored", sa.Integer(), server_default="0", nullable=False))
    # Batch predictions made before this revision kept the figure in their document.
    table = sa.table(
        "batch_predictions", sa.column("id", sa.String), sa.column("doc", sa.JSON), sa.column("rows_scored", sa.Integer)
    )
    bind = op.get_bind()
    for rid, doc in bind.execute(sa.select(table.c.id, table.c.doc)).all():
        if doc and doc.get("rows_scored"):
            bind.execute(table.update().where(table.c.id == rid).values(rows_scored=int(doc["rows_scored"])))


def downgrade() -> None:
    with op.batch_alter_table("batch_predictions", schema=None) as batch_op:
        batch_op.drop_column("rows_scored")
