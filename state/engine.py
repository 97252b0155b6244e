"""Engine creation (SQLite pragmas, JSON codec) and programmatic alembic upgrades."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from state.types import dumps_json, loads_json

DEFAULT_URL = "sqlite:///channelsync.db"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Arbitrary constant: serialises concurrent `migrate()` calls on one PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x6373_6D69  # "csmi"
READ_ONLY = "channelsync_read_only"


def create_store_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for the store; SQLite gets WAL, a busy timeout and foreign keys."""
    if sa.engine.make_url(url).get_backend_name() == "postgresql":
        # A long-running daemon outlives server restarts and idle-connection reaping.
        kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(
        url, json_serializer=dumps_json, json_deserializer=loads_json, **kwargs
    )
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later needs
        # it fails with SQLITE_BUSY at once instead of waiting for busy_timeout.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic Config pointing at the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Run alembic upgrade to ``revision`` (default head) in one transaction."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = sa.text("SELECT pg_advisory_xact_lock(:k)")
            connection.execute(lock, {"k": _MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no alembic revisions found in {MIGRATIONS_DIR}")
    return head
