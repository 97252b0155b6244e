"""A World to and from a JSON or YAML fixture of vendor-neutral seeds.

Format (YAML or JSON; datetimes ISO 8601, dates ``YYYY-MM-DD``, amounts as strings or
numbers; every field of :mod:`sandbox.world` by its attribute name)::

    seed: 1
    now: "2026-11-26T00:00:00Z"
    crms:
      - connection: sf-direct
        vendor: salesforce            # salesforce | hubspot | pipedrive | dynamics
        role: internal                # internal | distributor
        distributor_id: null
        users: [{key: u1, name: Ann Lee, email: ann@example.com}]
        accounts: [{key: A1, name: Acme GmbH, website: acme.de, country: DE}]
        deals: [{key: D1, account_key: A1, name: Pumps, amount: "1200.00", currency: EUR,
                 stage: open, close_date: 2027-01-31, created_at: 2026-10-01T09:00:00Z,
                 modified_at: 2026-11-20T09:00:00Z, registered_by: dist-x}]
    truth:                            # optional
      customers: {C1: [[sf-direct, A1], [hs-x, "123"]]}
      conflicts: [{kind: channel_vs_channel, customer: C1, records: [...]}]
      registrations: [[sf-direct, D1, active]]
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from sandbox.world import CrmSeed, GroundTruth, SeedAccount, SeedDeal, SeedUser, World

_DATETIME_FIELDS = {"created_at", "modified_at", "last_activity_at", "registered_at"}
_DATE_FIELDS = {"close_date", "registration_expires_at"}
VENDORS = ("salesforce", "hubspot", "pipedrive", "dynamics")


class FixtureError(ValueError):
    """A fixture that cannot become a World; the message names the file and the place."""


def load_world(path: Path) -> World:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: cannot read fixture: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("crms"), list):
        raise FixtureError(f"{path}: a world fixture is a mapping with a 'crms' list")
    return world_from_dict(data, source=str(path))


def world_from_dict(data: dict[str, Any], *, source: str = "fixture") -> World:
    crms = [_crm(c, f"{source}: crms[{i}]") for i, c in enumerate(data["crms"])]
    truth = GroundTruth()
    raw = data.get("truth") or {}
    for customer, members in (raw.get("customers") or {}).items():
        for connection, key in members:
            truth.customer_of[(str(connection), str(key))] = str(customer)
    truth.conflicts = list(raw.get("conflicts") or [])
    for connection, key, state in raw.get("registrations") or []:
        truth.registrations[(str(connection), str(key))] = str(state)
    now = data.get("now")
    return World(seed=int(data.get("seed", 0)), crms=crms, truth=truth,
                 now=_datetime(now, f"{source}: now") if now else None)


def world_to_dict(world: World) -> dict[str, Any]:
    """The inverse of :func:`world_from_dict`: JSON-serialisable, ground truth included."""
    customers: dict[str, list[list[str]]] = {}
    for (connection, key), customer in world.truth.customer_of.items():
        customers.setdefault(customer, []).append([connection, key])
    return {
        "seed": world.seed,
        "now": world.now.isoformat() if world.now else None,
        "crms": [_plain(dataclasses.asdict(crm)) for crm in world.crms],
        "truth": {
            "customers": customers,
            "conflicts": world.truth.conflicts,
            "registrations": [[c, k, s] for (c, k), s in world.truth.registrations.items()],
        },
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _crm(data: Any, where: str) -> CrmSeed:
    if not isinstance(data, dict):
        raise FixtureError(f"{where}: expected a mapping")
    for required in ("connection", "vendor", "role"):
        if not data.get(required):
            raise FixtureError(f"{where}: '{required}' is required")
    if data["vendor"] not in VENDORS:
        raise FixtureError(f"{where}: vendor {data['vendor']!r} is not one of {VENDORS}")
    where = f"{where} ({data['connection']})"
    return CrmSeed(
        connection=str(data["connection"]), vendor=str(data["vendor"]), role=str(data["role"]),
        distributor_id=data.get("distributor_id"),
        users=[_record(SeedUser, u, f"{where}: users[{i}]")
               for i, u in enumerate(data.get("users") or [])],
        accounts=[_record(SeedAccount, a, f"{where}: accounts[{i}]")
                  for i, a in enumerate(data.get("accounts") or [])],
        deals=[_record(SeedDeal, d, f"{where}: deals[{i}]")
               for i, d in enumerate(data.get("deals") or [])],
    )


def _record(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise FixtureError(f"{where}: expected a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise FixtureError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        place = f"{where}.{name}"
        if value is None:
            values[name] = None
        elif name in _DATETIME_FIELDS:
            values[name] = _datetime(value, place)
        elif name in _DATE_FIELDS:
            values[name] = _date(value, place)
        elif name == "amount":
            try:
                values[name] = Decimal(str(value))
            except InvalidOperation as exc:
                raise FixtureError(f"{place}: {value!r} is not an amount") from exc
        else:
            values[name] = str(value)
    try:
        return cls(**values)
    except TypeError as exc:
        raise FixtureError(f"{where}: {exc}") from exc


def _datetime(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise FixtureError(f"{where}: {value!r} is not an ISO 8601 datetime") from exc
    if parsed.tzinfo is None:
        raise FixtureError(f"{where}: {value!r} needs a time zone (e.g. Z)")
    return parsed


def _date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise FixtureError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc
