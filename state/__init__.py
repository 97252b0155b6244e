"""Persistent state: normalized records, customers, runs, findings, outbox and ledger."""

from __future__ import annotations

from state.engine import DEFAULT_URL, create_store_engine
from state.rows import (
    AccountRow,
    ConnectionRunRow,
    CustomerLinkRow,
    FindingDelta,
    FindingIn,
    FindingRow,
    MatchDecisionRow,
    NotificationIn,
    NotificationRow,
    OpportunityRow,
    OutboxItemIn,
    OutboxRow,
    PageResult,
    RecordKey,
    ReviewItemIn,
    ReviewItemRow,
    RunRow,
    SkippedRow,
)
from state.store import Store

__all__ = [
    "DEFAULT_URL",
    "AccountRow",
    "ConnectionRunRow",
    "CustomerLinkRow",
    "FindingDelta",
    "FindingIn",
    "FindingRow",
    "MatchDecisionRow",
    "NotificationIn",
    "NotificationRow",
    "OpportunityRow",
    "OutboxItemIn",
    "OutboxRow",
    "PageResult",
    "RecordKey",
    "ReviewItemIn",
    "ReviewItemRow",
    "RunRow",
    "SkippedRow",
    "Store",
    "create_store_engine",
]
