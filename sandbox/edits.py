"""A CRM user's edits through each sandbox's Python API (benchmarks and tests change data).

``edit_record`` changes a deal's amount or an account's name the way a person would in
the vendor's UI (the sandbox bumps the modified timestamp), by the record id the
connector reads (``external_id`` in the store).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# vendor -> entity -> (object name, name field, amount field)
_OBJECTS: dict[str, dict[str, tuple[str, str, str]]] = {
    "salesforce": {"account": ("Account", "Name", ""),
                   "opportunity": ("Opportunity", "Name", "Amount")},
    "hubspot": {"account": ("companies", "name", ""),
                "opportunity": ("deals", "dealname", "amount")},
    "pipedrive": {"account": ("organizations", "name", ""),
                  "opportunity": ("deals", "title", "value")},
    "dynamics": {"account": ("account", "name", ""),
                 "opportunity": ("opportunity", "name", "estimatedvalue")},
}


def edit_record(sandbox: Any, entity: str, external_id: str, *, name: str | None = None,
                amount: Decimal | None = None) -> None:
    """Set ``name`` and/or ``amount`` (deals only) of one record in a launched sandbox."""
    vendor = sandbox.vendor
    obj, name_field, amount_field = _OBJECTS[vendor][entity]
    values: dict[str, Any] = {}
    if name is not None:
        values[name_field] = name
    if amount is not None:
        if not amount_field:
            raise ValueError(f"{vendor} {entity} has no amount")
        values[amount_field] = str(amount) if vendor == "hubspot" else float(amount)
    if not values:
        return
    app = sandbox.app
    if vendor == "salesforce":
        app.org.update(obj, external_id, values)
    elif vendor == "hubspot":
        app.account.update(obj, external_id, values)
    elif vendor == "pipedrive":
        app.user_update(obj, int(external_id), values)
    elif vendor == "dynamics":
        app.update_record(obj, external_id, values)
    else:
        raise ValueError(f"unknown vendor {vendor!r}")


def move_deal(sandbox: Any, deal_id: str, account_id: str) -> None:
    """Put a deal on another account of the same CRM (Salesforce and Pipedrive)."""
    if sandbox.vendor == "salesforce":
        sandbox.app.org.update("Opportunity", deal_id, {"AccountId": account_id})
    elif sandbox.vendor == "pipedrive":
        sandbox.app.user_update("deals", int(deal_id), {"org_id": int(account_id)})
    else:
        raise NotImplementedError(f"moving a deal in {sandbox.vendor}")


def delete_record(sandbox: Any, entity: str, external_id: str) -> None:
    """Delete a record as a user would (Salesforce, Pipedrive, Dynamics)."""
    obj = _OBJECTS[sandbox.vendor][entity][0]
    if sandbox.vendor == "salesforce":
        sandbox.app.org.delete(obj, external_id)
    elif sandbox.vendor == "pipedrive":
        sandbox.app.user_delete(obj, int(external_id))
    elif sandbox.vendor == "dynamics":
        sandbox.app.delete_record(obj, external_id)
    else:
        raise NotImplementedError(f"deleting in {sandbox.vendor}")
