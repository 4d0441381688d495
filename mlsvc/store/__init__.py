"""Metadata store: SQLAlchemy tables and queries (SQLite by default, PostgreSQL at scale), and migrations."""

from mlsvc.store.sql import SqlStore

__all__ = ["SqlStore"]
