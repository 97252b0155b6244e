"""An index on a review item's second record: an incremental cycle replaces the open items
that name the accounts it re-matched, on either side of the pair (the pair's unique
constraint already serves the first side).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_review_item_b", "review_item",
                    ["b_connection", "b_entity", "b_external_id"])


def downgrade() -> None:
    op.drop_index("ix_review_item_b", table_name="review_item")
