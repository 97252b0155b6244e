"""Incremental evaluation bookkeeping: engine state, next thresholds, evaluated deal refs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from state.types import UtcDateTime, json_type

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_state",
        sa.Column("name", sa.String(), primary_key=True, nullable=False),
        sa.Column("value", json_type(), nullable=True),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "engine_threshold",
        sa.Column("group_key", sa.String(), primary_key=True, nullable=False),
        sa.Column("due_at", UtcDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_engine_threshold_due_at", "engine_threshold", ["due_at"])
    op.create_table(
        "engine_opportunity",
        sa.Column("connection", sa.String(), primary_key=True, nullable=False),
        sa.Column("external_id", sa.String(), primary_key=True, nullable=False),
        sa.Column("account_ref", sa.String(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("engine_opportunity")
    op.drop_index("ix_engine_threshold_due_at", table_name="engine_threshold")
    op.drop_table("engine_threshold")
    op.drop_table("engine_state")
