"""Canonical rows as the pull layer hands them to Store.apply_page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def account(external_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "external_id": external_id,
        "name": f"Acme {external_id} GmbH",
        "domain": f"acme-{external_id}.example",
        "country": "DE",
        "duns": "123456789",
        "vat_id": "DE123456789",
        "channel_owner": "dist-a",
        "owner_user": "u1",
        "partner_id": None,
        "created_at": T0,
        "modified_at": T0,
        "vendor_modified_at": T0,
        "etag": "1",
        "raw": {"Name": f"Acme {external_id} GmbH", "Website": "acme.example", "n": 1},
    }
    row.update(overrides)
    return row


def opportunity(external_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "external_id": external_id,
        "name": f"Deal {external_id}",
        "account_ref": "a1",
        "amount": Decimal("12500.50"),
        "currency": "EUR",
        "stage_raw": "Negotiation",
        "stage_category": "open",
        "close_date": date(2026, 6, 30),
        # An offset other than UTC: the store must keep the instant, not the wall time.
        "created_at": datetime(2026, 2, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))),
        "modified_at": T0,
        "last_activity_at": T0,
        "owner_user": "u2",
        "channel_owner": "dist-b",
        "registered_by": "dist-b",
        "registered_at": T0,
        "registration_expires_at": date(2026, 5, 30),
        "registration_status": "active",
        "registration_decision": None,
        "reassign_to": None,
        "vendor_modified_at": T0,
        "etag": "W/1",
        "raw": {"Name": f"Deal {external_id}", "Amount": 12500.5},
    }
    row.update(overrides)
    return row


def page(store: Any, rows: list[dict[str, Any]], *, run_id: int, entity: str = "account",
         connection: str = "sf", deleted: tuple[str, ...] = (), full_refresh: bool = False,
         cursor: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Apply one page with sensible defaults."""
    return store.apply_page(
        connection=connection, entity=entity, rows=rows, deleted_ids=list(deleted),
        skipped=kwargs.pop("skipped", []), cursor=cursor or {"since": "x"}, run_id=run_id,
        full_refresh=full_refresh, **kwargs,
    )
