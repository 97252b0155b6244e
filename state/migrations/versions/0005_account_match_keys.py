"""Each account's matching keys, kept between full evaluations: normalising every name
and website again was most of a full match's time at a million accounts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_match_key",
        sa.Column("account_id", sa.Integer(), primary_key=True, autoincrement=False,
                  nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(), nullable=True),
        sa.Column("duns", sa.String(), nullable=True),
        sa.Column("vat", sa.String(), nullable=True),
        sa.Column("domain", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("legal", sa.String(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("account_match_key")
