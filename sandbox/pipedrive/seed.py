"""Turning neutral seed records and native fixtures into a Pipedrive company's data."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

from sandbox.pipedrive.company import Company
from sandbox.pipedrive.fields import DEALS, ORGANIZATIONS
from sandbox.pipedrive.store import parse_rfc3339
from sandbox.world import CrmSeed, SeedAccount, SeedDeal

YES_NO = ["Yes", "No"]
REGISTRATION_STATES = ["Pending", "Active", "Expiring", "Expired", "Extended", "Released",
                       "Won", "Lost"]
DECISIONS = ["Extend", "Reassign", "Release"]

# The custom fields the default mapping (config/mappings/pipedrive.yaml) uses.
DEFAULT_CUSTOM_FIELDS: dict[str, list[tuple[str, str, list[str] | None]]] = {
    ORGANIZATIONS: [
        ("DUNS number", "varchar", None),
        ("VAT ID", "varchar", None),
        ("Channel owner", "varchar", None),
        ("Partner ID", "varchar", None),
        ("Channel conflict", "enum", YES_NO),
        ("Channel conflict reason", "text", None),
        ("Channel Sync customer ID", "varchar", None),
    ],
    DEALS: [
        ("Channel owner", "varchar", None),
        ("Registered by", "varchar", None),
        ("Registration date", "date", None),
        ("Registration expires", "date", None),
        ("Registration status", "enum", REGISTRATION_STATES),
        ("Registration decision", "enum", DECISIONS),
        ("Reassign to", "varchar", None),
        ("Channel conflict", "enum", YES_NO),
        ("Channel conflict reason", "text", None),
        ("Routed to", "varchar", None),
        ("Last partner activity", "date", None),
    ],
}

COUNTRY_NAMES: dict[str, str] = {
    "AT": "Austria", "AU": "Australia", "BE": "Belgium", "BR": "Brazil", "CA": "Canada",
    "CH": "Switzerland", "CN": "China", "CZ": "Czech Republic", "DE": "Germany",
    "DK": "Denmark", "ES": "Spain", "FI": "Finland", "FR": "France", "GB": "United Kingdom",
    "IE": "Ireland", "IN": "India", "IT": "Italy", "JP": "Japan", "KR": "South Korea",
    "LU": "Luxembourg", "MX": "Mexico", "NL": "Netherlands", "NO": "Norway", "NZ": "New Zealand",
    "PL": "Poland", "PT": "Portugal", "SE": "Sweden", "SG": "Singapore", "US": "United States",
    "ZA": "South Africa",
}


def ensure_default_fields(company: Company) -> None:
    for entity, specs in DEFAULT_CUSTOM_FIELDS.items():
        for name, kind, options in specs:
            company.fields.add_custom(entity, name, kind, options)


def _ts(moment: datetime | None, fallback: int) -> int:
    if moment is None:
        return fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _day(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def _label(value: str | None) -> str | None:
    return value.capitalize() if value else None


def seed_company(company: Company, crm: CrmSeed) -> dict[str, int]:
    """Create users, organizations and deals from a neutral seed; returns seed key -> id."""
    ensure_default_fields(company)
    now = int(company.clock())
    users = {u.key: company.add_user(u.name, u.email) for u in crm.users}
    ids: dict[str, int] = {}
    for account in crm.accounts:
        ids[account.key] = _seed_account(company, account, users, now)
    for deal in crm.deals:
        ids[deal.key] = _seed_deal(company, deal, users, ids, now)
    return ids


def _seed_account(company: Company, acc: SeedAccount, users: dict[str, int], now: int) -> int:
    fields: dict[str, Any] = {"name": acc.name, "website": acc.website}
    if acc.owner_user in users:
        fields["owner_id"] = users[acc.owner_user]
    if acc.country:
        country = COUNTRY_NAMES.get(acc.country.upper(), acc.country)
        fields["address"] = {"value": country, "country": country}
    for name, value in (("DUNS number", acc.duns), ("VAT ID", acc.vat_id),
                        ("Channel owner", acc.channel_owner), ("Partner ID", acc.partner_id)):
        if value is not None:
            fields[name] = value
    add_ts = _ts(acc.created_at, now)
    values = company.api_values(ORGANIZATIONS, fields)
    rec = company.create(ORGANIZATIONS, values, add_ts=add_ts,
                         update_ts=max(add_ts, _ts(acc.modified_at, add_ts)))
    return rec.id


def _seed_deal(
    company: Company, deal: SeedDeal, users: dict[str, int], ids: dict[str, int], now: int
) -> int:
    stage_pick = int(hashlib.sha1(deal.key.encode()).hexdigest()[:6], 16)
    fields: dict[str, Any] = {
        "title": deal.name, "value": float(deal.amount), "currency": deal.currency,
        "expected_close_date": deal.close_date.isoformat(),
        "stage_id": 1 + stage_pick % 5, "status": deal.stage if deal.stage != "open" else "open",
    }
    if deal.account_key in ids:
        fields["org_id"] = ids[deal.account_key]
    if deal.owner_user in users:
        fields["owner_id"] = users[deal.owner_user]
    custom = {
        "Registered by": deal.registered_by,
        "Registration date": _day(deal.registered_at),
        "Registration expires": _day(deal.registration_expires_at),
        "Registration status": _label(deal.registration_status),
        "Registration decision": _label(deal.registration_decision),
        "Reassign to": deal.reassign_to,
        "Last partner activity": _day(deal.last_activity_at),
    }
    fields.update({k: v for k, v in custom.items() if v is not None})
    add_ts = _ts(deal.created_at, now)
    values = company.api_values(DEALS, fields)
    rec = company.create(DEALS, values, add_ts=add_ts,
                         update_ts=max(add_ts, _ts(deal.modified_at, add_ts)))
    return rec.id


def load_fixture(company: Company, data: dict[str, Any]) -> None:
    """Load native records; see the package docstring for the format."""
    if data.get("default_fields", True):
        ensure_default_fields(company)
    for user in data.get("users", ()):
        company.add_user(user["name"], user["email"])
    for entity, specs in data.get("fields", {}).items():
        for spec in specs:
            company.fields.add_custom(entity, spec["name"], spec["type"], spec.get("options"))
    for entity in (ORGANIZATIONS, DEALS):
        for raw in data.get(entity, ()):
            item = dict(raw)
            times = {
                "record_id": item.pop("id", None),
                "add_ts": parse_rfc3339(item.pop("add_time")) if "add_time" in item else None,
                "update_ts": (parse_rfc3339(item.pop("update_time"))
                              if "update_time" in item else None),
            }
            deleted = item.pop("is_deleted", False)
            rec = company.create(entity, company.api_values(entity, item), **times)
            if deleted:
                company.delete(entity, rec.id)
