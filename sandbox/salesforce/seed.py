"""Fills a Salesforce sandbox org from a neutral CrmSeed or from a native fixture.

Fixture format (JSON/YAML-like mapping)::

    {
      "User":        [{"key": "u1", "Username": "ann@acme.example", "Email": "ann@acme.example",
                       "FirstName": "Ann", "LastName": "Lee"}],
      "Account":     [{"key": "a1", "Name": "Acme GmbH", "Website": "acme.de",
                       "OwnerId": "@u1", "CreatedDate": "2026-01-05T09:00:00Z",
                       "SystemModstamp": "2026-02-01T10:00:00Z"}],
      "Opportunity": [{"key": "o1", "AccountId": "@a1", "Name": "Acme pumps",
                       "StageName": "Prospecting", "CloseDate": "2026-06-30",
                       "Amount": 12000, "IsDeleted": false}]
    }

Objects load in the order User, Account, Opportunity. ``key`` is a fixture-local name;
a string value ``"@key"`` refers to the record created for that key (any reference field).
``CreatedDate`` and ``SystemModstamp`` (or ``LastModifiedDate``) set the record's system
timestamps; ``IsDeleted: true`` puts it in the recycle bin at its ``SystemModstamp``.
Any other key is an API field name of the object and is validated like an API write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox.salesforce.org import Org
from sandbox.salesforce.schema import STAGES
from sandbox.world import CrmSeed

COUNTRY_NAMES: dict[str, str] = {
    "DE": "Germany", "US": "United States", "GB": "United Kingdom", "FR": "France",
    "IT": "Italy", "ES": "Spain", "NL": "Netherlands", "BE": "Belgium", "AT": "Austria",
    "CH": "Switzerland", "SE": "Sweden", "NO": "Norway", "DK": "Denmark", "FI": "Finland",
    "PL": "Poland", "CZ": "Czechia", "IE": "Ireland", "PT": "Portugal", "JP": "Japan",
    "CN": "China", "IN": "India", "BR": "Brazil", "MX": "Mexico", "CA": "Canada",
    "AU": "Australia", "SG": "Singapore", "KR": "South Korea", "ZA": "South Africa",
    "LU": "Luxembourg",
}
_OPEN_STAGES = [s for s, cat in STAGES.items() if cat == "open"]
_SYSTEM_KEYS = ("key", "CreatedDate", "SystemModstamp", "LastModifiedDate", "IsDeleted")


def _stage(key: str, category: str) -> str:
    if category == "won":
        return "Closed Won"
    if category == "lost":
        return "Closed Lost"
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return _OPEN_STAGES[digest % len(_OPEN_STAGES)]


def _at(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(
        str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seed_org(org: Org, crm: CrmSeed) -> dict[str, str]:
    """Create users, accounts and opportunities from a neutral seed; returns seed key -> id."""
    ids: dict[str, str] = {}
    for user in crm.users:
        first, _, last = user.name.partition(" ")
        ids[f"user:{user.key}"] = org.create("User", {
            "Username": user.email, "Email": user.email, "FirstName": first,
            "LastName": last or first})
    partners: dict[str, str] = {}
    for acc in crm.accounts:
        values: dict[str, Any] = {
            "Name": acc.name, "Website": acc.website,
            "BillingCountry": COUNTRY_NAMES.get(acc.country or "", acc.country),
            "DunsNumber": acc.duns, "VAT_Number__c": acc.vat_id,
            "Channel_Owner__c": acc.channel_owner,
            "Type": "Channel Partner / Reseller" if acc.partner_id else "Customer - Direct",
        }
        if acc.partner_id:
            values.update({"Distributor_Id__c": acc.partner_id, "IsPartner": True})
        if acc.owner_user and f"user:{acc.owner_user}" in ids:
            values["OwnerId"] = ids[f"user:{acc.owner_user}"]
        new_id = org.create("Account", values, at=acc.created_at)
        if acc.modified_at:
            org.update("Account", new_id, {}, at=acc.modified_at)
        ids[f"account:{acc.key}"] = new_id
        if acc.partner_id:
            partners[acc.partner_id] = new_id
    for deal in crm.deals:
        partner = None
        if deal.registered_by:
            partner = partners.get(deal.registered_by)
            if partner is None:  # a Partner Community account for the registering distributor
                partner = org.create("Account", {
                    "Name": f"Distributor {deal.registered_by}", "IsPartner": True,
                    "Distributor_Id__c": deal.registered_by,
                    "Type": "Channel Partner / Reseller"}, at=deal.created_at)
                partners[deal.registered_by] = partner
        values = {
            "Name": deal.name, "AccountId": ids.get(f"account:{deal.account_key}"),
            "Amount": float(deal.amount), "CurrencyIsoCode": deal.currency,
            "StageName": _stage(deal.key, deal.stage), "CloseDate": deal.close_date,
            "Partner_Account__c": partner, "PartnerAccountId": partner,
            "Registered_At__c": deal.registered_at,
            "Registration_Status__c": deal.registration_status.capitalize()
            if deal.registration_status else None,
            "Registration_Expires__c": deal.registration_expires_at,
            "Registration_Decision__c": deal.registration_decision.capitalize()
            if deal.registration_decision else None,
            "Reassign_To__c": deal.reassign_to,
        }
        if deal.owner_user and f"user:{deal.owner_user}" in ids:
            values["OwnerId"] = ids[f"user:{deal.owner_user}"]
        new_id = org.create("Opportunity", values, at=deal.created_at)
        row = org.tables["Opportunity"][new_id]
        if deal.last_activity_at:
            row["LastActivityDate"] = deal.last_activity_at.date().isoformat()
        org.update("Opportunity", new_id, {}, at=deal.modified_at)
        ids[f"deal:{deal.key}"] = new_id
    return ids


def load_fixture_into(org: Org, data: Mapping[str, Any]) -> dict[str, str]:
    """Load native records (format in the module docstring); returns fixture key -> id."""
    keys: dict[str, str] = {}
    for obj_name in ("User", "Account", "Opportunity"):
        for index, raw in enumerate(data.get(obj_name, []) or []):
            where = f"fixture {obj_name}[{index}]"
            if not isinstance(raw, Mapping):
                raise ValueError(f"{where}: expected a mapping of field names to values")
            values: dict[str, Any] = {}
            for name, value in raw.items():
                if name in _SYSTEM_KEYS:
                    continue
                if isinstance(value, str) and value.startswith("@"):
                    if value[1:] not in keys:
                        raise ValueError(f"{where}.{name}: unknown reference {value}")
                    value = keys[value[1:]]
                values[name] = value
            try:
                new_id = org.create(obj_name, values, at=_at(raw.get("CreatedDate")))
                stamp = _at(raw.get("SystemModstamp") or raw.get("LastModifiedDate"))
                if stamp:
                    org.update(obj_name, new_id, {}, at=stamp)
                if raw.get("IsDeleted"):
                    org.delete(obj_name, new_id, at=stamp)
            except Exception as exc:
                raise ValueError(f"{where}: {exc}") from exc
            if "key" in raw:
                keys[str(raw["key"])] = new_id
    return keys
