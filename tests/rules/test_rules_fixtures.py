"""Builders for hand-made rule snapshots (no tests here; shared by the rules tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.model import AccountFact, OpportunityFact, RecordKey, Role, Snapshot

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
INTERNAL = "sf-main"  # the manufacturer's Salesforce connection


def akey(connection: str, external_id: str) -> RecordKey:
    return RecordKey(connection, "account", external_id)


def okey(connection: str, external_id: str) -> RecordKey:
    return RecordKey(connection, "opportunity", external_id)


def account(
    connection: str, external_id: str, customer: str = "C1", *, distributor: str | None = None,
    **fields: Any,
) -> AccountFact:
    role: Role = "distributor" if distributor else "internal"
    return AccountFact(
        key=akey(connection, external_id), customer_id=customer, role=role,
        distributor_id=distributor, **fields,
    )


def direct_opp(external_id: str, customer: str = "C1", **fields: Any) -> OpportunityFact:
    fields.setdefault("created_at", NOW - 5 * DAY)
    return OpportunityFact(
        key=okey(INTERNAL, external_id), customer_id=customer, role="internal",
        distributor_id=None, account_key=akey(INTERNAL, "acc-" + customer), party="direct",
        **fields,
    )


def partner_opp(
    distributor: str, external_id: str, customer: str = "C1", *, registered_days_ago: int | None,
    **fields: Any,
) -> OpportunityFact:
    """A deal in the distributor's own CRM (connection named after the distributor)."""
    if registered_days_ago is not None:
        fields.setdefault("registered_by", distributor)
        fields.setdefault("registered_at", NOW - registered_days_ago * DAY)
        fields.setdefault("last_activity_at", NOW - DAY)
    fields.setdefault("created_at", NOW - 200 * DAY)
    fields.setdefault("amount", Decimal("1000"))
    fields.setdefault("currency", "EUR")
    return OpportunityFact(
        key=okey(distributor, external_id), customer_id=customer, role="distributor",
        distributor_id=distributor, account_key=akey(distributor, "acc-" + customer),
        party=distributor, **fields,
    )


def snapshot(*records: AccountFact | OpportunityFact) -> Snapshot:
    return Snapshot(
        accounts=[r for r in records if isinstance(r, AccountFact)],
        opportunities=[r for r in records if isinstance(r, OpportunityFact)],
    )


def day(text: str) -> date:
    return date.fromisoformat(text)
