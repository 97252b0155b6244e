"""Plain values the Store takes and returns (frozen, slotted; no ORM objects leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple


class RecordKey(NamedTuple):
    """Identifies one record as read from one connection."""

    connection: str
    entity: str  # account | opportunity
    external_id: str


@dataclass(frozen=True, slots=True)
class AccountRow:
    connection: str
    external_id: str
    name: str | None
    domain: str | None
    country: str | None
    duns: str | None
    vat_id: str | None
    channel_owner: str | None
    owner_user: str | None
    partner_id: str | None
    created_at: datetime | None
    modified_at: datetime | None
    deleted: bool
    deleted_at: datetime | None
    vendor_modified_at: datetime | None
    etag: str | None
    changed_generation: int
    updated_at: datetime

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.connection, "account", self.external_id)


@dataclass(frozen=True, slots=True)
class OpportunityRow:
    connection: str
    external_id: str
    name: str | None
    account_ref: str | None
    amount: Decimal | None
    currency: str | None
    stage_raw: str | None
    stage_category: str | None
    close_date: date | None
    created_at: datetime | None
    modified_at: datetime | None
    last_activity_at: datetime | None
    owner_user: str | None
    channel_owner: str | None
    registered_by: str | None
    registered_at: datetime | None
    registration_expires_at: date | None
    registration_status: str | None
    registration_decision: str | None
    reassign_to: str | None
    deleted: bool
    deleted_at: datetime | None
    vendor_modified_at: datetime | None
    etag: str | None
    changed_generation: int
    updated_at: datetime

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.connection, "opportunity", self.external_id)

    @property
    def account_key(self) -> RecordKey | None:
        if self.account_ref is None:
            return None
        return RecordKey(self.connection, "account", self.account_ref)


@dataclass(frozen=True, slots=True)
class PageResult:
    """What one stored page did: rows new, changed, identical to what we had, tombstoned."""

    inserted: int
    updated: int
    unchanged: int
    deleted: int
    skipped: int


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    trigger: str
    counts: dict[str, Any]
    error: str | None


@dataclass(frozen=True, slots=True)
class ConnectionRunRow:
    id: int
    run_id: int
    connection: str
    status: str
    counts: dict[str, Any]
    writes_sent: int
    writes_failed: int
    budget: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class SkippedRow:
    id: int
    run_id: int
    connection: str
    entity: str
    external_id: str | None
    reason: str
    payload: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerLinkRow:
    key: RecordKey
    customer_id: str
    method: str
    score: float


@dataclass(frozen=True, slots=True)
class MatchDecisionRow:
    a: RecordKey  # the smaller key of the pair
    b: RecordKey
    verdict: str  # same | never
    decided_by: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewItemIn:
    a: RecordKey
    b: RecordKey
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReviewItemRow:
    id: int
    a: RecordKey
    b: RecordKey
    score: float
    evidence: dict[str, Any]
    status: str  # open | resolved
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FindingIn:
    key: str  # stable identity of the finding across runs
    kind: str
    rule: str
    customer_id: str | None = None
    connection: str | None = None
    entity: str | None = None
    external_id: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FindingRow:
    id: int
    key: str
    kind: str
    rule: str
    customer_id: str | None
    connection: str | None
    entity: str | None
    external_id: str | None
    evidence: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class FindingDelta:
    """Finding keys that opened (new or reopened) and resolved in one upsert."""

    opened: tuple[str, ...]
    resolved: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutboxItemIn:
    connection: str
    entity: str
    external_id: str
    field: str
    value: Any
    previous: Any = None
    rule: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    connection: str
    entity: str
    external_id: str
    field: str
    value: Any
    previous: Any
    rule: str | None
    reason: str | None
    state: str  # pending | sent | failed | dead
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationIn:
    key: str  # each key is delivered once, ever
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    state: str  # pending | delivered | failed | dead
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    created_at: datetime
