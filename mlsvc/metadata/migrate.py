"""Applying the store's alembic migrations at start-up, once even when several processes start together."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every mlsvc process sharing a PostgreSQL database.
_PG_LOCK_KEY = 7_305_112_017


def alembic_config() -> Config:
    _quiet_alembic()  # before alembic is imported: it logs its plugins as it loads them
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema."""
    cfg = alembic_config()
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _quiet_alembic() -> None:
    """Every process migrates at start; alembic's INFO lines (its plugins, "Context impl SQLiteImpl") would bury the
    lines a person reads. A migration actually applied is still logged ("Running upgrade …")."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    migration_log = logging.getLogger("alembic.runtime.migration")
    if _only_steps not in migration_log.filters:
        migration_log.addFilter(_only_steps)


def _only_steps(record: logging.LogRecord) -> bool:
    """Keep alembic's lines about migrations it runs, not those it prints every time it looks."""
    return record.levelno > logging.INFO or str(record.msg).startswith("Running")
