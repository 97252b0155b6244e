"""Indexes on findings by customer and by record: each incremental cycle asks for the open
findings of the customers and records it re-evaluated, which scanned every finding.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = (("ix_finding_customer_id", ["customer_id"]),
           ("ix_finding_record", ["connection", "entity", "external_id"]))


def upgrade() -> None:
    for name, columns in INDEXES:
        op.create_index(name, "finding", columns)


def downgrade() -> None:
    for name, _columns in INDEXES:
        op.drop_index(name, table_name="finding")
