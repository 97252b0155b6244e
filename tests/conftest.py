"""Shared fixtures: a fresh store database on SQLite and on PostgreSQL for every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from state import Store

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return os.environ.get("CHANNELSYNC_TEST_PG_URL", DEFAULT_PG_URL)


@pytest.fixture(scope="session")
def _postgres_admin() -> Iterator[sa.Engine]:
    """An autocommit engine on the configured PostgreSQL; fails (never skips) if unreachable."""
    url = postgres_admin_url()
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is unreachable at {make_url(url).render_as_string(hide_password=True)}"
            f" ({exc.orig}). Start it, point CHANNELSYNC_TEST_PG_URL at a server, or deselect"
            " these tests explicitly with -m 'not postgres'.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL database.

    Each PostgreSQL test gets its own database (dropped afterwards), so tests can run in
    parallel under pytest-xdist.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'channelsync.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("_postgres_admin")
    name = f"cs_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url()).set(database=name).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated, empty ``state.Store`` on ``store_url``."""
    from state import Store

    result = Store.from_url(store_url)
    result.migrate()
    try:
        yield result
    finally:
        result.close()
