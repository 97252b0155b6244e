"""Vendor-neutral seed records: what the scenario generator produces and each vendor
sandbox turns into its own native records (its field names, ids, option values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


@dataclass(slots=True)
class SeedUser:
    key: str
    name: str
    email: str


@dataclass(slots=True)
class SeedAccount:
    key: str  # unique within its CRM; the sandbox assigns the vendor id
    name: str
    website: str | None
    country: str | None  # ISO 3166-1 alpha-2
    duns: str | None = None
    vat_id: str | None = None
    owner_user: str | None = None  # SeedUser.key
    channel_owner: str | None = None  # distributor id or "direct", as a manager set it
    partner_id: str | None = None  # this account is the distributor with that id
    created_at: datetime | None = None
    modified_at: datetime | None = None


@dataclass(slots=True)
class SeedDeal:
    key: str
    account_key: str
    name: str
    amount: Decimal
    currency: str
    stage: str  # open | won | lost
    close_date: date
    created_at: datetime
    modified_at: datetime
    last_activity_at: datetime | None = None
    owner_user: str | None = None
    registered_by: str | None = None  # distributor id (partner field in an internal CRM)
    registered_at: datetime | None = None
    registration_status: str | None = None
    registration_expires_at: date | None = None
    registration_decision: str | None = None  # extend | reassign | release
    reassign_to: str | None = None


@dataclass(slots=True)
class CrmSeed:
    """One CRM connection's records."""

    connection: str
    vendor: str  # salesforce | hubspot | pipedrive | dynamics
    role: str  # internal | distributor
    distributor_id: str | None
    users: list[SeedUser] = field(default_factory=list)
    accounts: list[SeedAccount] = field(default_factory=list)
    deals: list[SeedDeal] = field(default_factory=list)


@dataclass(slots=True)
class GroundTruth:
    """Which seeded accounts are the same real-world customer, and the planted conflicts."""

    customer_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (connection, key)
    conflicts: list[dict[str, object]] = field(default_factory=list)
    # (connection, deal key) -> expected registration state at World.now before any
    # decision is carried out: active | expiring | expired | won | lost
    registrations: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(slots=True)
class World:
    seed: int
    crms: list[CrmSeed]
    truth: GroundTruth
    now: datetime | None = None  # the instant the scenario's ages and states refer to
