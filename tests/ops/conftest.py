"""A fresh, empty PostgreSQL database for the HA test (fails, never skips, without a server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import postgres_admin_url


@pytest.fixture
def empty_postgres_url(
    _postgres_admin: sa.Engine, _postgres_databases: Callable[[str | None], str]
) -> Iterator[str]:
    """An empty database of its own: the daemons under test migrate it themselves."""
    name = _postgres_databases(None)
    yield make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)
    with _postgres_admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
