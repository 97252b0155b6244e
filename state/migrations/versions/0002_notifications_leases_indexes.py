"""Notifications, leases, and the indexes the engine's hot queries use.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from state.types import UtcDateTime, json_type

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("key", sa.String(), nullable=False, unique=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", json_type(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "lease",
        sa.Column("name", sa.String(), primary_key=True, nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_account_changed_generation", "account", ["changed_generation"])
    op.create_index("ix_opportunity_changed_generation", "opportunity", ["changed_generation"])
    op.create_index("ix_opportunity_account_ref", "opportunity", ["connection", "account_ref"])
    op.create_index("ix_outbox_due", "outbox", ["connection", "state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_index("ix_opportunity_account_ref", table_name="opportunity")
    op.drop_index("ix_opportunity_changed_generation", table_name="opportunity")
    op.drop_index("ix_account_changed_generation", table_name="account")
    op.drop_table("lease")
    op.drop_table("notification")
