"""Shared fixtures: a fresh store database on SQLite and on PostgreSQL for every test.

``store_url`` is an empty database; ``migrated_store_url`` and ``store`` are migrated to
head. Every PostgreSQL test gets a database of its own (cloned from a migrated template
made once per test process, dropped afterwards), so tests run in parallel under
pytest-xdist. PostgreSQL tests fail, never skip, when the server is unreachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from state import Store

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """A test that runs the CLI in-process configures structlog to print to the stream
    pytest captured for it; put the defaults back so a later test never logs into that
    closed stream."""
    yield
    structlog.reset_defaults()


def postgres_admin_url() -> str:
    return os.environ.get("CHANNELSYNC_TEST_PG_URL", DEFAULT_PG_URL)


def _database_url(name: str) -> str:
    return make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)


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


@pytest.fixture(scope="session")
def _postgres_databases(_postgres_admin: sa.Engine) -> Iterator[Callable[[str | None], str]]:
    """Makes throwaway databases (empty, or cloned from a template); drops them all at the end."""
    made: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"cs_test_{uuid.uuid4().hex[:16]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with _postgres_admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
        made.append(name)
        return name

    yield create
    with _postgres_admin.connect() as connection:
        for name in reversed(made):
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _postgres_template(_postgres_databases: Callable[[str | None], str]) -> str:
    """A database migrated to head once per test process, to clone per test."""
    from state import Store

    name = _postgres_databases(None)
    template = Store.from_url(_database_url(name))
    template.migrate()
    template.close()  # a template database must have no open connections
    return name


def _drop(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: ``sqlite`` or ``postgres``."""
    return str(request.param)


@pytest.fixture
def store_url(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if store_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    create = request.getfixturevalue("_postgres_databases")
    name = create(None)
    yield _database_url(name)
    _drop(request.getfixturevalue("_postgres_admin"), name)


@pytest.fixture
def migrated_store_url(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """The URL of a database of its own, migrated to head and empty."""
    if store_backend == "sqlite":
        from state import Store

        url = f"sqlite:///{tmp_path / 'channelsync.db'}"
        migrated = Store.from_url(url)
        migrated.migrate()
        migrated.close()
        yield url
        return
    create = request.getfixturevalue("_postgres_databases")
    name = create(request.getfixturevalue("_postgres_template"))
    yield _database_url(name)
    _drop(request.getfixturevalue("_postgres_admin"), name)


@pytest.fixture
def store(migrated_store_url: str) -> Iterator[Store]:
    """A migrated, empty ``state.Store`` of its own."""
    from state import Store

    result = Store.from_url(migrated_store_url)
    try:
        yield result
    finally:
        result.close()
