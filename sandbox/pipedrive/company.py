"""One Pipedrive company's data: users, fields, deals and organizations, and the edits a
user (or the API) makes to them. Callers hold the app's lock."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from sandbox.pipedrive.fields import (
    DEALS,
    ORGANIZATIONS,
    FieldDef,
    FieldRegistry,
    InputError,
    check_builtin_value,
    check_custom_value,
)
from sandbox.pipedrive.store import EntityStore, StoredRecord, rfc3339

# Keys the v2 schema types as non-nullable: omitted from a response when they have no value.
_OMIT_WHEN_NULL = frozenset({
    "owner_id", "person_id", "org_id", "pipeline_id", "stage_id", "stage_change_time",
    "won_time", "lost_time", "expected_close_date", "currency", "address",
})


class NotFoundError(LookupError):
    pass


class Company:
    """The data behind one sandbox instance."""

    def __init__(self, *, rng: random.Random, clock: Callable[[], float]) -> None:
        self.fields = FieldRegistry(rng)
        self.stores = {DEALS: EntityStore(DEALS), ORGANIZATIONS: EntityStore(ORGANIZATIONS)}
        self.users: dict[int, dict[str, Any]] = {}
        self.clock = clock

    # -- users ------------------------------------------------------------------------
    def add_user(self, name: str, email: str) -> int:
        user_id = len(self.users) + 1
        now = rfc3339(self.clock()).replace("T", " ").rstrip("Z")
        self.users[user_id] = {
            "id": user_id, "name": name, "email": email, "default_currency": "EUR",
            "locale": "en_US", "lang": 1, "phone": None, "activated": True,
            "last_login": now, "created": now, "modified": now,
            "has_created_company": user_id == 1, "active_flag": True, "is_admin": int(user_id == 1),
            "timezone_name": "Europe/Berlin", "role_id": 1, "is_you": user_id == 1,
        }
        return user_id

    def default_owner(self) -> int:
        if not self.users:
            self.add_user("API user", "api.user@example.com")
        return min(self.users)

    # -- reading ----------------------------------------------------------------------
    def record(self, entity: str, record_id: int, *, include_deleted: bool = True) -> StoredRecord:
        store = self.stores[entity]
        rec = store.records.get(record_id)
        if rec is None or not store.visible(rec, self.clock()):
            raise NotFoundError(f"{entity} {record_id} not found")
        if rec.deleted_at is not None and not include_deleted:
            raise NotFoundError(f"{entity} {record_id} is deleted")
        return rec

    def custom_value(self, entity: str, record_id: int, name: str) -> Any:
        """A custom field's value as a user sees it (option labels, not ids)."""
        fdef = self._custom(entity, name)
        raw = self.record(entity, record_id).data()["custom_fields"].get(fdef.field_code)
        return _to_label(fdef, raw)

    # -- writing ----------------------------------------------------------------------
    def create(
        self, entity: str, values: dict[str, Any], *, add_ts: int | None = None,
        update_ts: int | None = None, record_id: int | None = None,
    ) -> StoredRecord:
        """Create from API-form values (custom fields under ``custom_fields`` by hash key)."""
        store = self.stores[entity]
        now = int(self.clock())
        rid = record_id if record_id is not None else store.next_id
        if rid in store.records:
            raise InputError(f"{entity} {rid} already exists")
        add_ts = now if add_ts is None else add_ts
        update_ts = add_ts if update_ts is None else update_ts
        data = self._skeleton(entity, rid)
        self.validate(entity, rid, values)
        self._apply(entity, data, values, update_ts)
        data["add_time"] = rfc3339(add_ts)
        data["update_time"] = rfc3339(update_ts)
        rec = StoredRecord(_compact(data), add_ts, update_ts)
        store.add(rec)
        return rec

    def update(self, entity: str, record_id: int, values: dict[str, Any]) -> StoredRecord:
        rec = self.record(entity, record_id, include_deleted=False)
        self.validate(entity, record_id, values)
        now = int(self.clock())
        data = rec.data()
        self._apply(entity, data, values, now)
        data["update_time"] = rfc3339(now)
        self.stores[entity].retime(rec, now)
        rec.set(_compact(data))
        return rec

    def delete(self, entity: str, record_id: int) -> None:
        rec = self.record(entity, record_id, include_deleted=False)
        now = int(self.clock())
        data = rec.data()
        data["is_deleted"] = True
        data["update_time"] = rfc3339(now)
        rec.deleted_at = self.clock()
        self.stores[entity].retime(rec, now)
        rec.set(data)

    def validate(self, entity: str, record_id: int, values: dict[str, Any]) -> None:
        ctx = {"users": self.users.keys(), "orgs": self.stores[ORGANIZATIONS].records.keys()}
        custom_keys = self.fields.custom_by_key(entity)
        builtins = self.fields.builtin(entity)
        for key, value in values.items():
            if key == "custom_fields":
                if not isinstance(value, dict):
                    raise InputError("custom_fields: expected an object")
                for ckey, cvalue in value.items():
                    fdef = custom_keys.get(ckey)
                    if fdef is None:
                        raise InputError(f"custom_fields.{ckey}: unknown custom field")
                    check_custom_value(fdef, cvalue, ctx["users"])
            elif key == "currency" or (key in builtins and builtins[key].writable):
                check_builtin_value(entity, key, value, ctx)
            else:
                raise InputError(f"{key}: unknown or read-only field for {entity}")

    def _skeleton(self, entity: str, rid: int) -> dict[str, Any]:
        owner = self.default_owner()
        if entity == DEALS:
            return {
                "id": rid, "title": "", "creator_user_id": owner, "owner_id": owner,
                "person_id": None, "org_id": None, "pipeline_id": 1, "stage_id": 1,
                "value": 0, "currency": "EUR", "add_time": None, "update_time": None,
                "stage_change_time": None, "is_deleted": False, "is_archived": False,
                "status": "open", "probability": None, "lost_reason": None, "visible_to": 3,
                "close_time": None, "won_time": None, "lost_time": None,
                "expected_close_date": None, "label_ids": [], "origin": "API",
                "origin_id": None, "channel": None, "channel_id": None,
                "arr": None, "mrr": None, "acv": None, "custom_fields": {},
            }
        return {
            "id": rid, "name": "", "owner_id": owner, "add_time": None, "update_time": None,
            "is_deleted": False, "visible_to": 3, "address": None, "label_ids": [],
            "website": None, "linkedin": None, "industry": None, "annual_revenue": None,
            "employee_count": None, "custom_fields": {},
        }

    def _apply(self, entity: str, data: dict[str, Any], values: dict[str, Any], now: int) -> None:
        for key, value in values.items():
            if key == "custom_fields":
                data.setdefault("custom_fields", {}).update(value)
            elif key == "status" and entity == DEALS and value != data.get("status"):
                data["status"] = value
                stamp = rfc3339(now)
                data["won_time"] = stamp if value == "won" else None
                data["lost_time"] = stamp if value == "lost" else None
                data["close_time"] = None if value == "open" else stamp
            elif key == "stage_id" and value != data.get("stage_id"):
                data["stage_id"] = value
                data["stage_change_time"] = rfc3339(now)
            else:
                data[key] = value
        if "custom_fields" in data:
            for fdef in self.fields.custom(entity):
                data["custom_fields"].setdefault(fdef.field_code, None)

    # -- user-facing helpers ----------------------------------------------------------
    def _custom(self, entity: str, name: str) -> FieldDef:
        fdef = self.fields.custom_by_name(entity, name)
        if fdef is None:
            raise KeyError(f"{entity}: no custom field named {name!r}")
        return fdef

    def api_values(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """Turn user-form values (custom fields by NAME, options by LABEL) into API form."""
        out: dict[str, Any] = {}
        builtins = self.fields.builtin(entity)
        for key, value in values.items():
            if key in builtins or key in ("currency", "custom_fields"):
                out[key] = value
                continue
            fdef = self._custom(entity, key)
            out.setdefault("custom_fields", {})[fdef.field_code] = _to_id(fdef, value)
        return out

    def drop_field(self, entity: str, name: str) -> None:
        fdef = self.fields.remove(entity, name)
        for rec in self.stores[entity].records.values():
            data = rec.data()
            data.get("custom_fields", {}).pop(fdef.field_code, None)
            rec.set(data)

    def corrupt(self, entity: str, record_id: int) -> None:
        """Keep the record listable but make its update_time unreadable."""
        rec = self.stores[entity].records[record_id]
        data = rec.data()
        data["update_time"] = "not-a-date"
        rec.blob = bytes(memoryview(orjson.dumps(data)))


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not (v is None and k in _OMIT_WHEN_NULL)}


def _to_id(fdef: FieldDef, value: Any) -> Any:
    if value is None:
        return None
    if fdef.field_type == "enum":
        return fdef.option_id(value)
    if fdef.field_type == "set":
        return [fdef.option_id(v) for v in value] or None
    return value


def _to_label(fdef: FieldDef, raw: Any) -> Any:
    labels = {o["id"]: o["label"] for o in fdef.options or ()}
    if raw is None:
        return None
    if fdef.field_type == "enum":
        return labels.get(raw, raw)
    if fdef.field_type == "set":
        return [labels.get(v, v) for v in raw]
    return raw
