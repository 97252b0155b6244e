"""Indexes on the record tables' ``updated_at``: incremental evaluation asks which records
changed since its previous read every cycle, which scanned both tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (("ix_account_updated_at", "account"), ("ix_opportunity_updated_at", "opportunity"))


def upgrade() -> None:
    for name, table in INDEXES:
        op.create_index(name, table, ["updated_at"])


def downgrade() -> None:
    for name, table in INDEXES:
        op.drop_index(name, table_name=table)
