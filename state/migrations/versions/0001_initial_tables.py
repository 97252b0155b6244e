"""Initial tables: records, customers, runs, cursors, findings, outbox and ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from state.types import UtcDateTime, json_type

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _str(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, UtcDateTime(timezone=True), nullable=nullable)


def _json(name: str) -> sa.Column:
    return sa.Column(name, json_type(), nullable=True)


def _pk() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True, nullable=False)


def _record_columns() -> list[sa.Column]:
    return [
        _pk(),
        _str("connection"),
        _str("external_id"),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        _ts("deleted_at"),
        _ts("vendor_modified_at"),
        _str("etag", True),
        _json("raw"),
        sa.Column("seen_generation", sa.Integer(), nullable=True),
        sa.Column("changed_generation", sa.Integer(), nullable=False),
        _ts("updated_at", False),
    ]


def _pair_columns() -> list[sa.Column]:
    return [_str(f"{side}_{part}") for side in "ab" for part in ("connection", "entity", "external_id")]


_PAIR = [f"{side}_{part}" for side in "ab" for part in ("connection", "entity", "external_id")]
_OPEN_OUTBOX = sa.text("state IN ('pending', 'failed')")


def upgrade() -> None:
    op.create_table(
        "account",
        *_record_columns(),
        *[_str(name, True) for name in (
            "name", "domain", "country", "duns", "vat_id", "channel_owner", "owner_user", "partner_id",
        )],
        _ts("created_at"),
        _ts("modified_at"),
        sa.UniqueConstraint("connection", "external_id", name="uq_account_key"),
    )
    op.create_table(
        "opportunity",
        *_record_columns(),
        _str("name", True),
        _str("account_ref", True),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=True),
        _str("currency", True),
        _str("stage_raw", True),
        _str("stage_category", True),
        sa.Column("close_date", sa.Date(), nullable=True),
        _ts("created_at"),
        _ts("modified_at"),
        _ts("last_activity_at"),
        _str("owner_user", True),
        _str("channel_owner", True),
        _str("registered_by", True),
        _ts("registered_at"),
        sa.Column("registration_expires_at", sa.Date(), nullable=True),
        _str("registration_status", True),
        _str("registration_decision", True),
        _str("reassign_to", True),
        sa.UniqueConstraint("connection", "external_id", name="uq_opportunity_key"),
    )
    op.create_table(
        "end_customer",
        sa.Column("id", sa.String(), primary_key=True, nullable=False),
        _str("display_name"),
        _ts("created_at", False),
    )
    op.create_table(
        "customer_link",
        sa.Column("connection", sa.String(), primary_key=True, nullable=False),
        sa.Column("entity", sa.String(), primary_key=True, nullable=False),
        sa.Column("external_id", sa.String(), primary_key=True, nullable=False),
        _str("customer_id"),
        _str("method"),
        sa.Column("score", sa.Float(), nullable=False),
        _ts("updated_at", False),
    )
    op.create_index("ix_customer_link_customer_id", "customer_link", ["customer_id"])
    op.create_table(
        "match_decision",
        _pk(),
        *_pair_columns(),
        _str("verdict"),
        _str("decided_by"),
        _ts("decided_at", False),
        sa.UniqueConstraint(*_PAIR, name="uq_match_decision_pair"),
    )
    op.create_table(
        "review_item",
        _pk(),
        *_pair_columns(),
        sa.Column("score", sa.Float(), nullable=False),
        _json("evidence"),
        _str("status"),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.UniqueConstraint(*_PAIR, name="uq_review_item_pair"),
    )
    op.create_table(
        "cursor",
        sa.Column("connection", sa.String(), primary_key=True, nullable=False),
        sa.Column("entity", sa.String(), primary_key=True, nullable=False),
        _json("value"),
        sa.Column("refresh_generation", sa.Integer(), nullable=True),
        _ts("updated_at", False),
    )
    op.create_table(
        "sync_run",
        _pk(),
        _ts("started_at", False),
        _ts("finished_at"),
        _str("status"),
        _str("trigger"),
        _json("counts"),
        _str("error", True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "connection_run",
        _pk(),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("sync_run.id"), nullable=False),
        _str("connection"),
        _str("status"),
        _json("counts"),
        sa.Column("writes_sent", sa.Integer(), nullable=False),
        sa.Column("writes_failed", sa.Integer(), nullable=False),
        _json("budget"),
        _str("error", True),
        _ts("started_at", False),
        _ts("finished_at"),
    )
    op.create_index("ix_connection_run_run_id", "connection_run", ["run_id"])
    op.create_table(
        "skipped_record",
        _pk(),
        sa.Column("run_id", sa.Integer(), nullable=False),
        _str("connection"),
        _str("entity"),
        _str("external_id", True),
        _str("reason"),
        _json("payload"),
        _ts("created_at", False),
    )
    op.create_index("ix_skipped_record_run_id", "skipped_record", ["run_id"])
    op.create_table(
        "finding",
        _pk(),
        sa.Column("key", sa.String(), nullable=False, unique=True),
        _str("kind"),
        _str("rule"),
        *[_str(name, True) for name in ("customer_id", "connection", "entity", "external_id")],
        _json("evidence"),
        _ts("first_seen", False),
        _ts("last_seen", False),
        _ts("resolved_at"),
    )
    op.create_table(
        "outbox",
        _pk(),
        *[_str(name) for name in ("connection", "entity", "external_id", "field")],
        _json("value"),
        _json("previous"),
        _str("rule", True),
        _str("reason", True),
        _str("state"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        _str("last_error", True),
        _ts("created_at", False),
        _ts("updated_at", False),
    )
    op.create_index(
        "uq_outbox_open_item", "outbox", ["connection", "entity", "external_id", "field"],
        unique=True, sqlite_where=_OPEN_OUTBOX, postgresql_where=_OPEN_OUTBOX,
    )
    op.create_table(
        "ledger",
        *[sa.Column(name, sa.String(), primary_key=True, nullable=False)
          for name in ("connection", "entity", "external_id", "field")],
        _json("value"),
        _ts("written_at", False),
    )


def downgrade() -> None:
    for name in (
        "ledger", "outbox", "finding", "skipped_record", "connection_run", "sync_run", "cursor",
        "review_item", "match_decision", "customer_link", "end_customer", "opportunity", "account",
    ):
        op.drop_table(name)
