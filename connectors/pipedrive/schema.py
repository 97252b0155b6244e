"""Pipedrive field metadata: names to this company's hash keys, option ids to labels, values
to the strict v2 input forms, and the mapping checks for ``check-config --online``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.base import Entity, EntitySchema, FieldInfo, did_you_mean

OBJECTS = {Entity.ACCOUNT: "organizations", Entity.OPPORTUNITY: "deals"}
FIELDS_PATH = {
    Entity.ACCOUNT: "/api/v2/organizationFields",
    Entity.OPPORTUNITY: "/api/v2/dealFields",
}

# Pipedrive field_type -> FieldInfo.type
_KIND_TYPES = {
    "varchar": "string", "varchar_auto": "string", "varchar_options": "string", "phone": "string",
    "text": "text", "int": "integer", "double": "decimal", "monetary": "decimal",
    "boolean": "boolean", "date": "date", "enum": "picklist", "set": "picklist",
    "status": "picklist", "visible_to": "integer", "user": "reference", "org": "reference",
    "people": "reference", "deal": "reference", "stage": "reference", "address": "string",
}
# Built-in timestamps are typed "date" in the metadata but carry RFC 3339 date-times.
_DATETIME_CODES = frozenset({"add_time", "update_time", "stage_change_time", "close_time",
                             "won_time", "lost_time"})
_WRITABLE_BUILTINS = frozenset({"title", "name", "owner_id", "org_id", "value", "currency",
                                "status", "stage_id", "expected_close_date", "probability",
                                "lost_reason", "website", "linkedin"})
# Canonical (mapping) type -> FieldInfo types it can be read from / written to.
FITS: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "text", "picklist", "integer", "decimal", "reference",
                         "date", "datetime", "boolean"}),
    "integer": frozenset({"integer", "decimal", "reference"}),
    "decimal": frozenset({"decimal", "integer"}),
    "boolean": frozenset({"boolean", "picklist"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime", "date"}),
}


class EncodeError(ValueError):
    """A value this field cannot take; becomes a per-record write failure."""


@dataclass(frozen=True, slots=True)
class FieldMeta:
    name: str  # as in Record.fields: built-in code, "address.<part>" or custom field NAME
    code: str  # API key: built-in code or 40-char hash
    kind: str  # Pipedrive field_type
    custom: bool
    label: str
    part: str | None = None  # address sub-part
    labels: Mapping[Any, str] = field(default_factory=dict)  # option id -> label
    ids: Mapping[str, Any] = field(default_factory=dict)  # option label -> id

    @property
    def type(self) -> str:
        if not self.custom and self.code in _DATETIME_CODES:
            return "datetime"
        return _KIND_TYPES.get(self.kind, "string")

    @property
    def writable(self) -> bool:
        if self.part is not None:
            return False
        if self.custom:
            return self.kind in _KIND_TYPES and self.kind not in ("address", "status")
        return self.code in _WRITABLE_BUILTINS


@dataclass(frozen=True, slots=True)
class EntityFields:
    """The company's fields of one entity, by the names the connector uses."""

    entity: Entity
    by_name: Mapping[str, FieldMeta]
    ambiguous: frozenset[str]  # custom field names used by more than one field

    @classmethod
    def parse(cls, entity: Entity, items: Sequence[Mapping[str, Any]]) -> EntityFields:
        by_name: dict[str, FieldMeta] = {}
        ambiguous: set[str] = set()
        for item in sorted(items, key=lambda f: bool(f.get("is_custom_field"))):
            custom = bool(item.get("is_custom_field"))
            code, kind = str(item["field_code"]), str(item["field_type"])
            name = str(item["field_name"]) if custom else code
            options = item.get("options") or ()
            labels = {o["id"]: str(o["label"]) for o in options}
            meta = FieldMeta(name, code, kind, custom, str(item["field_name"]), None, labels,
                             {v: k for k, v in labels.items()})
            if name in by_name:
                if custom:
                    ambiguous.add(name)
                continue
            by_name[name] = meta
            if kind == "address":
                for sub in item.get("subfields") or ():
                    part = str(sub["field_code"])
                    by_name[f"{name}.{part}"] = FieldMeta(
                        f"{name}.{part}", code, "varchar", custom, str(sub["field_name"]), part)
            if kind == "monetary" and not custom:
                by_name.setdefault("currency", FieldMeta("currency", "currency", "varchar",
                                                         False, "Currency"))
        return cls(entity, by_name, frozenset(ambiguous))

    def schema(self) -> EntitySchema:
        infos = {
            m.name: FieldInfo(name=m.name, type=m.type, label=m.label, writable=m.writable,
                              options=tuple(m.labels.values()), custom=m.custom)
            for m in self.by_name.values()
        }
        return EntitySchema(entity=self.entity, object_name=OBJECTS[self.entity], fields=infos)


# -- reading ----------------------------------------------------------------------------
_EMPTY: Mapping[str, Any] = {}


def _label_of(meta: FieldMeta, raw: Any) -> Any:
    if raw is None:
        return None
    if meta.kind == "set":
        values = raw if isinstance(raw, list) else str(raw).split(",")
        return [meta.labels.get(_as_id(v), str(v)) for v in values]
    return meta.labels.get(_as_id(raw), str(raw))


def _as_id(raw: Any) -> Any:
    if isinstance(raw, dict):  # include_option_labels form {id, label}
        return raw.get("id")
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    return raw


class RowDecoder:
    """Turns one API record into ``Record.fields`` for the wanted names. Built once per
    read; the per-record path is flat loops over precomputed (name, key) pairs."""

    __slots__ = ("custom", "options", "parts", "plain")

    def __init__(self, fields: EntityFields, names: Sequence[str]) -> None:
        self.plain: list[tuple[str, str]] = []
        self.custom: list[tuple[str, str]] = []
        self.options: list[tuple[str, str, FieldMeta]] = []
        self.parts: list[tuple[str, str, str]] = []
        for name in names:
            meta = fields.by_name[name]
            if meta.part is not None:
                self.parts.append((name, meta.code, meta.part))
            elif meta.custom and (meta.labels or meta.kind in ("enum", "set")):
                self.options.append((name, meta.code, meta))
            elif meta.custom:
                self.custom.append((name, meta.code))
            else:
                self.plain.append((name, meta.code))

    def __call__(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        get = raw.get
        values = {name: get(code) for name, code in self.plain}
        custom = get("custom_fields") or _EMPTY
        for name, code in self.custom:
            values[name] = custom.get(code)
        for name, code, meta in self.options:
            value = custom.get(code)
            if value is not None:
                label = meta.labels.get(value) if value.__class__ is int else None
                value = label if label is not None else _label_of(meta, value)
            values[name] = value
        for name, code, part in self.parts:
            whole = get(code)
            values[name] = whole.get(part) if isinstance(whole, dict) else None
        return values


# -- writing ----------------------------------------------------------------------------
def _number(meta: FieldMeta, value: Any) -> int | float:
    if isinstance(value, bool):
        raise EncodeError(f"'{meta.name}' takes a number, not a boolean")
    if isinstance(value, int | float):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise EncodeError(f"'{meta.name}' takes a number, got {value!r}") from exc
    return int(number) if meta.kind == "int" and number == number.to_integral() else float(number)


def _option_id(meta: FieldMeta, label: Any) -> Any:
    key = label if isinstance(label, str) else str(label)
    if key not in meta.ids:
        known = ", ".join(sorted(meta.ids))
        raise EncodeError(f"'{meta.name}' has no option {label!r} (options: {known})")
    return meta.ids[key]


def encode_value(meta: FieldMeta, value: Any) -> Any:
    """A value in the exact form API v2 accepts for this field (strict: no coercion there)."""
    if value is None:
        return None
    kind = meta.kind
    if kind in ("enum", "status") and meta.labels:
        return _option_id(meta, value)
    if kind == "status":
        return str(value)
    if kind == "set":
        labels = value if isinstance(value, list | tuple | set | frozenset) else [value]
        return [_option_id(meta, v) for v in labels] or None  # [] is refused; null clears
    if kind in ("int", "double"):
        return _number(meta, value)
    if kind in ("user", "org", "people", "deal", "stage", "visible_to"):
        number = _number(meta, value)
        if not isinstance(number, int) and not float(number).is_integer():
            raise EncodeError(f"'{meta.name}' takes an id, got {value!r}")
        return int(number)
    if kind == "date":
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError as exc:
            raise EncodeError(f"'{meta.name}' takes a date, got {value!r}") from exc
    if kind == "monetary":
        if meta.custom:
            if isinstance(value, dict):
                return value
            raise EncodeError(f"'{meta.name}' takes {{value, currency}}, got {value!r}")
        return _number(meta, value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise EncodeError(f"'{meta.name}' takes true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return value if isinstance(value, str) else str(value)


def patch_body(fields: EntityFields, values: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH body for one record; ``EncodeError`` names the first field that cannot be
    written."""
    body: dict[str, Any] = {}
    for name, value in values.items():
        meta = fields.by_name.get(name)
        if meta is None:
            raise EncodeError(f"no field '{name}' on {OBJECTS[fields.entity]}")
        if name in fields.ambiguous:
            raise EncodeError(f"field name '{name}' is used by several custom fields")
        if not meta.writable:
            raise EncodeError(f"field '{name}' is read-only")
        encoded = encode_value(meta, value)
        if meta.custom:
            body.setdefault("custom_fields", {})[meta.code] = encoded
        else:
            body[meta.code] = encoded
    return body


# -- check-config --online --------------------------------------------------------------
def _missing(fields: EntityFields, kind: str, name: str) -> str:
    hint = did_you_mean(name, list(fields.by_name), cutoff=0.7)
    return f"{kind} field {OBJECTS[fields.entity]}.{name}: not found{hint}"


def check_mapping(
    fields: EntityFields,
    reads: Mapping[str, str | None],
    writes: Mapping[str, tuple[str | None, Sequence[Any]]],
) -> list[str]:
    """Problems with mapped fields, each a sentence naming the object and the field."""
    problems: list[str] = []
    obj = OBJECTS[fields.entity]
    for kind, name, expected in [("read", n, t) for n, t in reads.items()] + [
        ("write", n, t) for n, (t, _) in writes.items()
    ]:
        meta = fields.by_name.get(name)
        if meta is None:
            problems.append(_missing(fields, kind, name))
            continue
        if name in fields.ambiguous:
            problems.append(f"{kind} field {obj}.{name}: several custom fields have this name; "
                            "rename one in Pipedrive")
        if expected is not None and meta.type not in FITS.get(expected, frozenset({meta.type})):
            problems.append(f"{kind} field {obj}.{name}: Pipedrive type {meta.kind} does not "
                            f"fit the mapped type {expected}")
        if kind == "write":
            if not meta.writable:
                problems.append(f"write field {obj}.{name}: not writable through API v2")
            values = writes[name][1]
            if meta.ids:
                unknown = [v for v in values if v is not None and str(v) not in meta.ids]
                if unknown:
                    problems.append(
                        f"write field {obj}.{name}: option(s) {', '.join(map(repr, unknown))} "
                        f"not among {', '.join(meta.ids)}")
    return problems
