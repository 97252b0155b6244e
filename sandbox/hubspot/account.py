"""One HubSpot account's data (companies, deals, owners, deal-company associations) and the
Python API a CRM user's edits go through: seeding, fixtures, create/edit/archive.

Fixture format (``load_fixture``), all keys optional::

    {"owners": [{"id": "101", "email": "a@x.com", "firstName": "A", "lastName": "B"}],
     "properties": {"companies": [{"name": "tier", "label": "Tier", "type": "enumeration",
                                   "fieldType": "select", "options": [{"label": "Gold",
                                   "value": "gold"}]}], "deals": [...]},
     "companies": [{"id": "201", "properties": {"name": "Acme", "domain": "acme.com"},
                    "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "...",
                    "archivedAt": null}],
     "deals": [{"id": "301", "properties": {"dealname": "Pumps", "dealstage": "closedwon"},
                "companies": ["201"], "updatedAt": "..."}]}

Property values are stored as given (strings); properties a record uses that are neither
HubSpot-defined here nor declared under ``properties`` are created as single-line text.
A deal's first listed company is its primary company (association type 5).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sandbox.hubspot.schema import (
    OPEN_STAGES,
    PropertyDef,
    PropertyValueError,
    default_properties,
    iso_ms,
    normalise_value,
    to_ms,
)
from sandbox.hubspot.store import HsRecord, ObjectStore
from sandbox.world import CrmSeed

COUNTRY_NAMES: dict[str, str] = {
    "DE": "Germany", "US": "United States", "GB": "United Kingdom", "FR": "France",
    "IT": "Italy", "ES": "Spain", "NL": "Netherlands", "BE": "Belgium", "AT": "Austria",
    "CH": "Switzerland", "SE": "Sweden", "NO": "Norway", "DK": "Denmark", "FI": "Finland",
    "PL": "Poland", "CZ": "Czech Republic", "PT": "Portugal", "IE": "Ireland",
    "CA": "Canada", "MX": "Mexico", "BR": "Brazil", "JP": "Japan", "CN": "China",
    "IN": "India", "AU": "Australia", "LU": "Luxembourg", "HU": "Hungary", "TR": "Turkey",
    "SG": "Singapore", "NZ": "New Zealand", "ZA": "South Africa", "KR": "South Korea",
    "HK": "Hong Kong", "AE": "United Arab Emirates", "GR": "Greece", "RO": "Romania",
    "SK": "Slovakia", "SI": "Slovenia", "HR": "Croatia", "EE": "Estonia",
    "LV": "Latvia", "LT": "Lithuania", "IL": "Israel", "AR": "Argentina",
    "CL": "Chile", "CO": "Colombia",
}
FIRST_ID = {"companies": 20_000_000_001, "deals": 30_000_000_001}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ms(value: datetime | date | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class HubSpotAccount:
    """The data of one portal. Every public method takes the lock itself."""

    def __init__(self, *, portal_id: int, lock: threading.RLock | None = None) -> None:
        self.portal_id = portal_id
        self.lock = lock or threading.RLock()
        self.owners: list[dict[str, Any]] = []
        self.objects: dict[str, ObjectStore] = {
            name: ObjectStore(name, default_properties(name, [])) for name in FIRST_ID
        }
        self.deal_companies: dict[int, list[int]] = {}  # first entry is the primary company
        self.company_deals: dict[int, set[int]] = {}
        self._next_id = dict(FIRST_ID)

    # -- owners ---------------------------------------------------------------------
    def add_owner(self, *, email: str, first: str, last: str, owner_id: str | None = None) -> str:
        with self.lock:
            oid = owner_id or str(70_000_001 + len(self.owners))
            stamp = iso_ms(now_ms())
            self.owners.append({
                "id": oid, "email": email, "type": "PERSON", "firstName": first,
                "lastName": last, "userId": int(oid) + 1000 if oid.isdigit() else None,
                "userIdIncludingInactive": int(oid) + 1000 if oid.isdigit() else None,
                "createdAt": stamp, "updatedAt": stamp, "archived": False, "teams": [],
            })
            options = [(f"{o['firstName']} {o['lastName']}", o["id"]) for o in self.owners]
            for store in self.objects.values():
                store.properties["hubspot_owner_id"].options = options
            return oid

    # -- schema -----------------------------------------------------------------------
    def add_property(self, obj: str, prop: PropertyDef) -> None:
        with self.lock:
            prop.created_ms = prop.created_ms or now_ms()
            self.objects[obj].properties[prop.name] = prop
            self.objects[obj].schema += 1

    def archive_property(self, obj: str, name: str) -> None:
        """Schema drift: the property disappears from the properties API and from results."""
        with self.lock:
            self.objects[obj].properties.pop(name, None)
            self.objects[obj].schema += 1

    # -- records as a user edits them ----------------------------------------------------
    def create(
        self,
        obj: str,
        properties: Mapping[str, Any],
        *,
        created_at: datetime | None = None,
        modified_at: datetime | None = None,
        companies: Iterable[str] = (),
        record_id: str | None = None,
    ) -> str:
        with self.lock:
            store = self.objects[obj]
            rid = int(record_id) if record_id else self._next_id[obj]
            self._next_id[obj] = max(self._next_id[obj], rid + 1)
            stamp = now_ms()
            created = _ms(created_at) or stamp
            rec = HsRecord(id=rid, created_ms=created, updated_ms=_ms(modified_at) or stamp,
                           props={})
            self.apply_properties(store, rec, properties, system=True)
            store.insert(rec)
            for company in companies:
                self.associate(str(rid), company)
            return str(rid)

    def update(
        self, obj: str, record_id: str, properties: Mapping[str, Any], *,
        modified_at: datetime | None = None, system: bool = True,
    ) -> None:
        """A user edit (may set read-only properties when ``system``); bumps the timestamp."""
        with self.lock:
            store = self.objects[obj]
            rec = store.live(record_id)
            if rec is None:
                raise KeyError(f"{obj} {record_id} not found")
            self.apply_properties(store, rec, properties, system=system)
            store.touch(rec, _ms(modified_at) or max(now_ms(), rec.updated_ms + 1))

    def archive(self, obj: str, record_id: str) -> None:
        with self.lock:
            store = self.objects[obj]
            rec = store.live(record_id)
            if rec is None:
                raise KeyError(f"{obj} {record_id} not found")
            store.archive(rec, now_ms())

    def restore(self, obj: str, record_id: str) -> None:
        with self.lock:
            store = self.objects[obj]
            rec = store.records.get(int(record_id))
            if rec is None:
                raise KeyError(f"{obj} {record_id} not found")
            store.restore(rec, now_ms())

    def corrupt(self, obj: str, record_id: str) -> None:
        """Serve this record with an undecodable modified timestamp; it stays listable."""
        with self.lock:
            store = self.objects[obj]
            rec = store.records[int(record_id)]
            rec.corrupt = True
            store.touch(rec, max(now_ms(), rec.updated_ms + 1))

    def get(self, obj: str, record_id: str) -> dict[str, str | None]:
        with self.lock:
            store = self.objects[obj]
            rec = store.records[int(record_id)]
            return {name: store.value(rec, name) for name in store.properties}

    def associate(self, deal_id: str, company_id: str) -> None:
        with self.lock:
            deal, company = int(deal_id), int(company_id)
            companies = self.deal_companies.setdefault(deal, [])
            if company not in companies:
                companies.append(company)
            self.company_deals.setdefault(company, set()).add(deal)

    def make_primary(self, deal_id: str, company_id: str) -> None:
        """A person moves the deal to another company. Like HubSpot's, this changes no
        property of the deal, so its ``hs_lastmodifieddate`` stays where it was."""
        with self.lock:
            deal, company = int(deal_id), int(company_id)
            old = self.deal_companies.get(deal, [])
            for previous in old:
                self.company_deals.get(previous, set()).discard(deal)
            self.deal_companies[deal] = [company]
            self.company_deals.setdefault(company, set()).add(deal)

    def apply_properties(
        self, store: ObjectStore, rec: HsRecord, properties: Mapping[str, Any], *, system: bool
    ) -> None:
        """Validate then store; raises ``PropertyValueError`` before changing anything."""
        staged: dict[str, str | None] = {}
        for name, value in properties.items():
            prop = store.properties.get(name)
            if prop is None:
                raise PropertyValueError(
                    "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                )
            if (prop.read_only or prop.calculated) and not system:
                raise PropertyValueError("READ_ONLY_VALUE", f'"{name}" is a read only property')
            if name in ("hs_object_id", "createdate", "hs_lastmodifieddate"):
                continue
            staged[name] = normalise_value(prop, value)
        rec.props.update(staged)

    # -- seeding ------------------------------------------------------------------------
    def seed(self, crm: CrmSeed) -> dict[str, str]:
        """Neutral seed records -> native companies, deals and owners. Returns the ids given,
        keyed ``user:<key>`` (owner id), ``account:<key>`` and ``deal:<key>``."""
        owner_ids = {u.key: self.add_owner(email=u.email, first=u.name.split(" ")[0],
                                           last=" ".join(u.name.split(" ")[1:]) or "-")
                     for u in crm.users}
        company_ids: dict[str, str] = {}
        deal_ids: dict[str, str] = {}
        for acc in crm.accounts:
            props: dict[str, Any] = {
                "name": acc.name,
                "domain": _domain(acc.website),
                "website": acc.website,
                "country": COUNTRY_NAMES.get(acc.country, acc.country) if acc.country else None,
                "duns_number": acc.duns,
                "vat_id": acc.vat_id,
                "hubspot_owner_id": owner_ids.get(acc.owner_user or ""),
                "channel_owner": acc.channel_owner,
                "partner_id": acc.partner_id,
            }
            company_ids[acc.key] = self.create(
                "companies", self._allow("companies", _present(props)), created_at=acc.created_at,
                modified_at=acc.modified_at or acc.created_at,
            )
        for deal in crm.deals:
            stage = {"won": "closedwon", "lost": "closedlost"}.get(deal.stage) or OPEN_STAGES[
                zlib.crc32(deal.key.encode()) % len(OPEN_STAGES)
            ]
            currency = self.objects["deals"].properties["deal_currency_code"]
            if deal.currency not in {v for _, v in currency.options}:
                currency.options.append((deal.currency, deal.currency))
            props = {
                "dealname": deal.name,
                "amount": str(deal.amount),
                "deal_currency_code": deal.currency,
                "dealstage": stage,
                "pipeline": "default",
                "closedate": _ms(deal.close_date),
                "notes_last_updated": _ms(deal.last_activity_at),
                "hubspot_owner_id": owner_ids.get(deal.owner_user or ""),
                "registered_by": deal.registered_by,
                "registration_date": _ms(deal.registered_at),
                "registration_status": deal.registration_status,
                "registration_expiry_date": _ms(deal.registration_expires_at),
                "registration_decision": deal.registration_decision,
                "reassign_to": deal.reassign_to,
            }
            company = company_ids.get(deal.account_key)
            deal_ids[deal.key] = self.create(
                "deals", self._allow("deals", _present(props)), created_at=deal.created_at,
                modified_at=deal.modified_at, companies=[company] if company else [],
            )
        return {
            **{f"user:{k}": v for k, v in owner_ids.items()},
            **{f"account:{k}": v for k, v in company_ids.items()},
            **{f"deal:{k}": v for k, v in deal_ids.items()},
        }

    def _allow(self, obj: str, props: dict[str, Any]) -> dict[str, Any]:
        """Seeds may carry option values the portal lacks: add them, as an admin would."""
        for name, value in props.items():
            prop = self.objects[obj].properties[name]
            known = {v for _, v in prop.options}
            grow = prop.type == "enumeration" and name != "hubspot_owner_id"
            if grow and str(value) not in known:
                prop.options.append((str(value).title(), str(value)))
        return props

    def load_fixture(self, data: Mapping[str, Any]) -> None:
        """Native records in the format of the module docstring."""
        for owner in data.get("owners", []):
            self.add_owner(email=owner["email"], first=owner.get("firstName", ""),
                           last=owner.get("lastName", ""), owner_id=owner.get("id"))
        for obj, props in (data.get("properties") or {}).items():
            for p in props:
                self.add_property(obj, PropertyDef(
                    p["name"], p.get("label", p["name"]), p.get("type", "string"),
                    p.get("fieldType", "text"), p.get("groupName", "custom"),
                    options=[(o["label"], o["value"]) for o in p.get("options", [])],
                    hubspot_defined=False,
                ))
        for obj in ("companies", "deals"):
            store = self.objects[obj]
            for row in data.get(obj, []):
                for name in row.get("properties", {}):
                    if name not in store.properties:
                        self.add_property(obj, PropertyDef(name, name, "string", "text",
                                                           "custom", hubspot_defined=False))
                rid = self.create(
                    obj, row.get("properties", {}), record_id=row.get("id"),
                    created_at=_dt(row.get("createdAt")), modified_at=_dt(row.get("updatedAt")),
                    companies=[str(c) for c in row.get("companies", [])],
                )
                if row.get("archivedAt"):
                    rec = store.records[int(rid)]
                    store.archive(rec, to_ms(row["archivedAt"]) or now_ms())


def _dt(value: Any) -> datetime | None:
    ms = to_ms(value)
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _present(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if v is not None and v != ""}


def _domain(website: str | None) -> str | None:
    if not website:
        return None
    host = website.split("://", 1)[-1].split("/", 1)[0].lower()
    return host.removeprefix("www.")
