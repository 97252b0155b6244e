"""The store's tables (SQLModel): records as read, customers, runs, findings, outbox, ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, Numeric, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from state.types import UtcDateTime, json_type

OPEN_OUTBOX_STATES = ("pending", "failed")
_OPEN_OUTBOX = text("state IN ('pending', 'failed')")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UtcDateTime, nullable=nullable, index=index)


def _json() -> Any:
    return Field(default=None, sa_type=json_type(), nullable=True)


class RecordColumns(SQLModel):
    """Bookkeeping columns every record table carries besides its canonical fields."""

    id: int | None = Field(default=None, primary_key=True)
    connection: str
    external_id: str
    deleted: bool = False
    deleted_at: datetime | None = _ts()
    vendor_modified_at: datetime | None = _ts()
    etag: str | None = None
    raw: Any = _json()
    seen_generation: int | None = None
    changed_generation: int = 0
    updated_at: datetime = _ts(nullable=False)


class Account(RecordColumns, table=True):
    __tablename__ = "account"
    __table_args__ = (
        UniqueConstraint("connection", "external_id", name="uq_account_key"),
        Index("ix_account_changed_generation", "changed_generation"),
        Index("ix_account_updated_at", "updated_at"),
    )

    name: str | None = None
    domain: str | None = None
    country: str | None = None
    duns: str | None = None
    vat_id: str | None = None
    channel_owner: str | None = None
    owner_user: str | None = None
    partner_id: str | None = None
    created_at: datetime | None = _ts()
    modified_at: datetime | None = _ts()


class Opportunity(RecordColumns, table=True):
    __tablename__ = "opportunity"
    __table_args__ = (
        UniqueConstraint("connection", "external_id", name="uq_opportunity_key"),
        Index("ix_opportunity_account_ref", "connection", "account_ref"),
        Index("ix_opportunity_changed_generation", "changed_generation"),
        Index("ix_opportunity_updated_at", "updated_at"),
    )

    name: str | None = None
    account_ref: str | None = None
    amount: Decimal | None = Field(default=None, sa_type=Numeric(20, 4))
    currency: str | None = None
    stage_raw: str | None = None
    stage_category: str | None = None
    close_date: date | None = None
    created_at: datetime | None = _ts()
    modified_at: datetime | None = _ts()
    last_activity_at: datetime | None = _ts()
    owner_user: str | None = None
    channel_owner: str | None = None
    registered_by: str | None = None
    registered_at: datetime | None = _ts()
    registration_expires_at: date | None = None
    registration_status: str | None = None
    registration_decision: str | None = None
    reassign_to: str | None = None


class AccountMatchKey(SQLModel, table=True):
    """An account's matching keys (:mod:`rules.features`), made from the account as it was
    at change generation ``generation`` by normalisation ``version``: a cache, made again
    when either differs (never by the page upsert, which only moves the generation)."""

    __tablename__ = "account_match_key"

    account_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    generation: int
    version: int
    country: str | None = None
    duns: str | None = None
    vat: str | None = None
    domain: str | None = None
    name: str
    legal: str | None = None


class EndCustomer(SQLModel, table=True):
    __tablename__ = "end_customer"

    id: str = Field(primary_key=True)
    display_name: str
    created_at: datetime = _ts(nullable=False)


class CustomerLink(SQLModel, table=True):
    __tablename__ = "customer_link"

    connection: str = Field(primary_key=True)
    entity: str = Field(primary_key=True)
    external_id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    method: str
    score: float
    updated_at: datetime = _ts(nullable=False)


class MatchDecision(SQLModel, table=True):
    """A person's verdict on a pair of records; keys are stored in sorted order."""

    __tablename__ = "match_decision"
    __table_args__ = (
        UniqueConstraint(
            "a_connection", "a_entity", "a_external_id",
            "b_connection", "b_entity", "b_external_id",
            name="uq_match_decision_pair",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    a_connection: str
    a_entity: str
    a_external_id: str
    b_connection: str
    b_entity: str
    b_external_id: str
    verdict: str  # same | never
    decided_by: str
    decided_at: datetime = _ts(nullable=False)


class ReviewItem(SQLModel, table=True):
    __tablename__ = "review_item"
    __table_args__ = (
        UniqueConstraint(
            "a_connection", "a_entity", "a_external_id",
            "b_connection", "b_entity", "b_external_id",
            name="uq_review_item_pair",
        ),
        Index("ix_review_item_b", "b_connection", "b_entity", "b_external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    a_connection: str
    a_entity: str
    a_external_id: str
    b_connection: str
    b_entity: str
    b_external_id: str
    score: float
    evidence: Any = _json()
    status: str = "open"  # open | resolved
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Cursor(SQLModel, table=True):
    __tablename__ = "cursor"

    connection: str = Field(primary_key=True)
    entity: str = Field(primary_key=True)
    value: Any = _json()
    # Run that began the full refresh in progress; rows not seen since are gone.
    refresh_generation: int | None = None
    updated_at: datetime = _ts(nullable=False)


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"
    __table_args__ = {"sqlite_autoincrement": True}  # run ids double as generations

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    status: str = "running"
    trigger: str
    counts: Any = _json()
    error: str | None = None


class ConnectionRun(SQLModel, table=True):
    __tablename__ = "connection_run"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="sync_run.id", index=True)
    connection: str
    status: str = "running"
    counts: Any = _json()
    writes_sent: int = 0
    writes_failed: int = 0
    budget: Any = _json()
    error: str | None = None
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()


class SkippedRecordRow(SQLModel, table=True):
    __tablename__ = "skipped_record"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    connection: str
    entity: str
    external_id: str | None = None
    reason: str
    payload: Any = _json()
    created_at: datetime = _ts(nullable=False)


class Finding(SQLModel, table=True):
    __tablename__ = "finding"
    __table_args__ = (
        # a partial evaluation asks for the open findings of some customers and records
        Index("ix_finding_customer_id", "customer_id"),
        Index("ix_finding_record", "connection", "entity", "external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    kind: str
    rule: str
    customer_id: str | None = None
    connection: str | None = None
    entity: str | None = None
    external_id: str | None = None
    evidence: Any = _json()
    first_seen: datetime = _ts(nullable=False)
    last_seen: datetime = _ts(nullable=False)
    resolved_at: datetime | None = _ts()


class OutboxItem(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "uq_outbox_open_item", "connection", "entity", "external_id", "field",
            unique=True, sqlite_where=_OPEN_OUTBOX, postgresql_where=_OPEN_OUTBOX,
        ),
        Index("ix_outbox_due", "connection", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connection: str
    entity: str
    external_id: str
    field: str
    value: Any = _json()
    previous: Any = _json()
    rule: str | None = None
    reason: str | None = None
    state: str = "pending"  # pending | sent | failed | dead
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = None
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger"

    connection: str = Field(primary_key=True)
    entity: str = Field(primary_key=True)
    external_id: str = Field(primary_key=True)
    field: str = Field(primary_key=True)
    value: Any = _json()
    written_at: datetime = _ts(nullable=False)


class Notification(SQLModel, table=True):
    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    kind: str
    payload: Any = _json()
    state: str = "pending"  # pending | delivered | failed | dead
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()
    last_error: str | None = None
    created_at: datetime = _ts(nullable=False)


class Lease(SQLModel, table=True):
    __tablename__ = "lease"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _ts(nullable=False)


def table(model: type[SQLModel]) -> Table:
    """The Core table behind a model (the Store works in Core for speed)."""
    result: Table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation
    return result


RECORD_TABLES: dict[str, type[RecordColumns]] = {"account": Account, "opportunity": Opportunity}
