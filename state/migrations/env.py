"""Alembic environment: runs on the connection handed in by state.engine.upgrade."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import state.tables  # noqa: F401  (registers the tables on SQLModel.metadata for autogenerate)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through state.engine.upgrade (needs a connection)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
