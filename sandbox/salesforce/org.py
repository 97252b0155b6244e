"""One sandbox org's records, recycle bin and the Python API for a CRM user's edits.

Rows are plain dicts replaced on every write (never mutated in place), so an open query
cursor keeps the versions it selected, as a Salesforce query locator does.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sandbox.salesforce.schema import (
    STAGES,
    FieldDef,
    ObjectDef,
    channel_custom_fields,
    make_id,
    normalize_id,
    org_pod,
    standard_objects,
)
from sandbox.salesforce.soql import format_datetime

Row = dict[str, Any]
INTEGRATION_USERNAME = "integration@channelsync.example"
_ORG_SERIALS = itertools.count(1)  # one per Org in this process: distinct org and record ids


class WriteError(Exception):
    """A record write Salesforce would refuse: ``code`` is its statusCode/errorCode."""

    def __init__(self, code: str, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = list(fields)

    def as_error(self, key: str = "statusCode") -> dict[str, Any]:
        return {key: self.code, "message": self.message, "fields": self.fields}


def _second(value: datetime) -> datetime:
    """Salesforce datetimes carry whole seconds (``.000`` milliseconds)."""
    return value.astimezone(UTC).replace(microsecond=0)


class Org:
    """One Salesforce org: sObject definitions, rows per object, and the clock."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None,
                 delete_window: timedelta = timedelta(days=15)) -> None:
        self.lock = threading.RLock()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.objects: dict[str, ObjectDef] = standard_objects()
        for obj_name, defs in channel_custom_fields().items():
            for fdef in defs:
                self.objects[obj_name].add(fdef)
        self.tables: dict[str, dict[str, Row]] = {name: {} for name in self.objects}
        self.delete_window = delete_window
        self.created_at = format_datetime(_second(self.clock()) - timedelta(days=365))
        self.earliest_available: dict[str, str] = {}  # object -> last physically purged
        self._counter = itertools.count(1)
        self.version = 0  # bumps on every write: rendered parent fields may be stale
        self.serial = next(_ORG_SERIALS)
        self.pod = org_pod(self.serial)
        self.org_id = make_id("00D", self.serial, self.pod)
        self.integration_user = self.create(
            "User", {"Username": INTEGRATION_USERNAME, "Email": INTEGRATION_USERNAME,
                     "FirstName": "Integration", "LastName": "User"})

    # -- helpers ----------------------------------------------------------------------
    def now(self) -> str:
        return format_datetime(_second(self.clock()))

    def obj(self, name: str) -> ObjectDef:
        for key, value in self.objects.items():
            if key.lower() == name.lower():
                return value
        raise KeyError(name)

    def get(self, obj_name: str, record_id: str) -> Row | None:
        ident = normalize_id(record_id)
        return self.tables[self.obj(obj_name).name].get(ident) if ident else None

    # -- user actions -----------------------------------------------------------------
    def create(self, obj_name: str, values: Mapping[str, Any], *, at: datetime | None = None,
               by: str | None = None) -> str:
        """Insert a record as a user would; returns its 18-character id."""
        with self.lock:
            obj = self.obj(obj_name)
            stamp = format_datetime(_second(at)) if at else self.now()
            record_id = make_id(obj.key_prefix, next(self._counter), self.pod)
            user = by or getattr(self, "integration_user", record_id)
            row: Row = {f: None for f in obj.fields}
            row.update({
                "Id": record_id, "IsDeleted": False, "CreatedDate": stamp, "CreatedById": user,
                "LastModifiedDate": stamp, "LastModifiedById": user, "SystemModstamp": stamp,
            })
            for fdef in obj.fields.values():
                if fdef.type == "boolean" and row[fdef.name] is None:
                    row[fdef.name] = False
            if obj.name == "User":
                first, last = values.get("FirstName", ""), values.get("LastName", "")
                row.update({"IsActive": True, "UserType": "Standard",
                            "Name": f"{first} {last}".strip() or values.get("Username")})
                values = {k: v for k, v in values.items() if k not in ("FirstName", "LastName")}
            if "OwnerId" in obj.fields:
                row["OwnerId"] = user
            if obj.name == "Opportunity":
                row["CurrencyIsoCode"] = "EUR"
            row.update(self._coerce(obj, values, creating=True))
            _derive(obj.name, row)
            self.tables[obj.name][record_id] = row
            self.version += 1
            return record_id

    def update(self, obj_name: str, record_id: str, values: Mapping[str, Any], *,
               at: datetime | None = None, by: str | None = None) -> Row:
        """Change fields as a user or the API would; bumps SystemModstamp/LastModifiedDate."""
        with self.lock:
            obj = self.obj(obj_name)
            current = self.get(obj.name, record_id)
            if current is None:
                raise WriteError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            if current["IsDeleted"]:
                raise WriteError("ENTITY_IS_DELETED", "entity is deleted")
            row = dict(current)
            row.update(self._coerce(obj, values, creating=False))
            stamp = format_datetime(_second(at)) if at else self.now()
            row.update({"LastModifiedDate": stamp, "SystemModstamp": stamp,
                        "LastModifiedById": by or self.integration_user})
            _derive(obj.name, row)
            self.tables[obj.name][row["Id"]] = row
            self.version += 1
            return row

    def delete(self, obj_name: str, record_id: str, *, at: datetime | None = None) -> None:
        """Move a record to the recycle bin (IsDeleted, new SystemModstamp); deleting an
        account also deletes its opportunities, as Salesforce does."""
        with self.lock:
            obj = self.obj(obj_name)
            current = self.get(obj.name, record_id)
            if current is None or current["IsDeleted"]:
                raise WriteError("ENTITY_IS_DELETED", "entity is deleted")
            stamp = format_datetime(_second(at)) if at else self.now()
            self.tables[obj.name][current["Id"]] = {**current, "IsDeleted": True,
                                                   "SystemModstamp": stamp}
            self.version += 1
            if obj.name == "Account":
                for opp in list(self.tables["Opportunity"].values()):
                    if opp["AccountId"] == current["Id"] and not opp["IsDeleted"]:
                        self.delete("Opportunity", opp["Id"], at=at)

    def undelete(self, obj_name: str, record_id: str) -> None:
        with self.lock:
            obj = self.obj(obj_name)
            current = self.get(obj.name, record_id)
            if current is None or not current["IsDeleted"]:
                raise WriteError("UNDELETE_FAILED", "entity is not in the recycle bin")
            self.tables[obj.name][current["Id"]] = {**current, "IsDeleted": False,
                                                   "SystemModstamp": self.now()}
            self.version += 1

    def purge(self, obj_name: str | None = None, *, before: datetime | None = None) -> int:
        """Physically remove recycle-bin rows deleted before ``before`` (all of them when
        ``None``: emptying the bin). getDeleted's ``earliestDateAvailable`` moves up."""
        with self.lock:
            cutoff = format_datetime(_second(before)) if before else None
            removed = 0
            names = [self.obj(obj_name).name] if obj_name else list(self.tables)
            for name in names:
                table = self.tables[name]
                gone = [r for r in table.values() if r["IsDeleted"]
                        and (cutoff is None or r["SystemModstamp"] < cutoff)]
                for row in gone:
                    del table[row["Id"]]
                    latest = self.earliest_available.get(name, "")
                    self.earliest_available[name] = max(latest, row["SystemModstamp"])
                removed += len(gone)
            self.version += 1 if removed else 0
            return removed

    def purge_expired(self) -> None:
        """The recycle bin keeps rows for the delete window (15 days by default)."""
        self.purge(before=self.clock() - self.delete_window)

    # -- schema changes ---------------------------------------------------------------
    def add_field(self, obj_name: str, fdef: FieldDef) -> None:
        with self.lock:
            self.obj(obj_name).add(fdef)

    def drop_field(self, obj_name: str, name: str) -> None:
        with self.lock:
            obj = self.obj(obj_name)
            fdef = obj.by_lower.get(name.lower())
            obj.remove(name)
            table = self.tables[obj.name]
            if fdef is not None:
                for key, row in table.items():
                    if fdef.name in row:
                        table[key] = {k: v for k, v in row.items() if k != fdef.name}
            self.version += 1

    # -- value checks -----------------------------------------------------------------
    def _coerce(self, obj: ObjectDef, values: Mapping[str, Any], *,
                creating: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in values.items():
            fdef = obj.by_lower.get(name.lower())
            if fdef is None:
                raise WriteError("INVALID_FIELD",
                                 f"No such column '{name}' on sobject of type {obj.name}", [name])
            allowed = fdef.createable if creating else fdef.updateable
            if not allowed and not (obj.name == "User" and fdef.name == "Name"):
                raise WriteError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {fdef.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.", [fdef.name])
            out[fdef.name] = coerce_value(fdef, value, self)
        return out


def coerce_value(fdef: FieldDef, value: Any, org: Org) -> Any:
    """A JSON value as the row stores it, or the WriteError Salesforce gives for it."""
    label = fdef.label or fdef.name
    if value is None or (value == "" and fdef.type != "boolean"):
        if not fdef.nillable:
            raise WriteError("REQUIRED_FIELD_MISSING",
                             f"Required fields are missing: [{fdef.name}]", [fdef.name])
        return False if fdef.type == "boolean" else None

    def bad() -> WriteError:
        return WriteError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                          f"{label}: value not of required type: {value}", [fdef.name])

    kind = fdef.type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind in ("currency", "double", "percent", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            raise bad()
        try:
            return float(value)
        except ValueError:
            raise bad() from None
    if kind == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise bad() from None
    if kind == "datetime":
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(
                str(value).replace("Z", "+00:00"))
        except ValueError:
            raise bad() from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return format_datetime(parsed)
    if kind in ("reference", "id"):
        ident = normalize_id(str(value))
        if ident is None:
            raise WriteError("MALFORMED_ID", f"{label}: id value of incorrect type: {value}",
                             [fdef.name])
        target = fdef.reference_to[0] if fdef.reference_to else None
        if target and ident not in org.tables.get(target, {}):
            raise WriteError("INVALID_CROSS_REFERENCE_KEY", f"{label}: id value of incorrect "
                             f"type: {value}", [fdef.name])
        return ident
    if not isinstance(value, str):
        raise bad()
    if kind == "picklist" and fdef.custom and fdef.picklist and value not in fdef.picklist:
        raise WriteError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                         f"{label}: bad value for restricted picklist field: {value}",
                         [fdef.name])
    if fdef.length and len(value) > fdef.length:
        raise WriteError("STRING_TOO_LONG", f"{label}: data value too large: {value[:40]} "
                         f"(max length={fdef.length})", [fdef.name])
    return value


def _derive(obj_name: str, row: Row) -> None:
    """Fields Salesforce computes: IsClosed/IsWon from the stage."""
    if obj_name == "Opportunity":
        category = STAGES.get(row.get("StageName") or "", "open")
        row["IsClosed"] = category != "open"
        row["IsWon"] = category == "won"
