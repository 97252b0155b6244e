"""Pipedrive field metadata (dealFields / organizationFields) and the strict v2 input rules."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

DEALS = "deals"
ORGANIZATIONS = "organizations"

TEXT_TYPES = frozenset({"varchar", "text", "varchar_auto", "phone", "varchar_options"})
OPTION_TYPES = frozenset({"enum", "set"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class InputError(ValueError):
    """A request body that Pipedrive's v2 validation would refuse (answered with 400)."""


@dataclass(slots=True)
class FieldDef:
    """One field as ``GET /api/v2/<entity>Fields`` describes it."""

    field_code: str
    field_name: str
    field_type: str
    is_custom_field: bool = False
    options: list[dict[str, Any]] | None = None  # [{"id": int|str, "label": str}]
    subfields: list[dict[str, str]] | None = None
    description: str = ""
    writable: bool = False  # built-ins only: accepted at the root of a PATCH body

    def as_json(self) -> dict[str, Any]:
        return {
            "field_name": self.field_name,
            "field_code": self.field_code,
            "description": self.description,
            "field_type": self.field_type,
            "options": self.options,
            "subfields": self.subfields,
            "is_custom_field": self.is_custom_field,
            "is_optional_response_field": False,
        }

    def option_ids(self) -> set[Any]:
        return {o["id"] for o in self.options or ()}

    def option_id(self, label: str) -> int:
        for option in self.options or ():
            if option["label"] == label:
                return int(option["id"])
        raise KeyError(f"{self.field_name}: no option labelled {label!r}")


_STATUS_OPTIONS = [{"id": s, "label": s.capitalize()} for s in ("open", "won", "lost", "deleted")]
_ADDRESS_PARTS = (
    "value", "country", "admin_area_level_1", "admin_area_level_2", "locality",
    "sublocality", "route", "street_number", "subpremise", "postal_code",
)


def builtin_fields(entity: str) -> list[FieldDef]:
    """The standard fields Pipedrive defines for every company."""
    if entity == DEALS:
        return [
            FieldDef("id", "ID", "int"),
            FieldDef("title", "Title", "varchar", writable=True),
            FieldDef("owner_id", "Owner", "user", writable=True),
            FieldDef("org_id", "Organization", "org", writable=True),
            FieldDef("person_id", "Contact person", "people", writable=True),
            FieldDef("pipeline_id", "Pipeline", "double", writable=True),
            FieldDef("stage_id", "Stage", "stage", writable=True),
            FieldDef(
                "value", "Value", "monetary", writable=True,
                subfields=[
                    {"field_code": "value", "field_name": "Amount of Value",
                     "field_type": "double"},
                    {"field_code": "currency", "field_name": "Currency of Value",
                     "field_type": "varchar"},
                ],
            ),
            FieldDef("status", "Status", "status", options=_STATUS_OPTIONS, writable=True),
            FieldDef("probability", "Probability", "double", writable=True),
            FieldDef("lost_reason", "Lost reason", "varchar", writable=True),
            FieldDef("expected_close_date", "Expected close date", "date", writable=True),
            FieldDef("add_time", "Deal created", "date"),
            FieldDef("update_time", "Update time", "date"),
            FieldDef("stage_change_time", "Last stage change", "date"),
            FieldDef("close_time", "Deal closed on", "date"),
            FieldDef("won_time", "Won time", "date"),
            FieldDef("lost_time", "Lost time", "date"),
            FieldDef("visible_to", "Visible to", "visible_to", writable=True),
            FieldDef("label_ids", "Label", "set", options=[], writable=True),
        ]
    return [
        FieldDef("id", "ID", "int"),
        FieldDef("name", "Name", "varchar", writable=True),
        FieldDef("owner_id", "Owner", "user", writable=True),
        FieldDef(
            "address", "Address", "address", writable=True,
            subfields=[
                {"field_code": p, "field_name": p.replace("_", " ").capitalize(),
                 "field_type": "varchar"}
                for p in _ADDRESS_PARTS
            ],
        ),
        FieldDef("website", "Website", "varchar", writable=True),
        FieldDef("linkedin", "LinkedIn profile", "varchar", writable=True),
        FieldDef("industry", "Industry", "enum", options=[], writable=True),
        FieldDef("annual_revenue", "Annual revenue", "int", writable=True),
        FieldDef("employee_count", "Number of employees", "int", writable=True),
        FieldDef("add_time", "Organization created", "date"),
        FieldDef("update_time", "Update time", "date"),
        FieldDef("visible_to", "Visible to", "visible_to", writable=True),
        FieldDef("label_ids", "Label", "set", options=[], writable=True),
    ]


@dataclass(slots=True)
class FieldRegistry:
    """The company's fields per entity; custom field keys and option ids come from ``rng``,
    so two sandbox instances never share them (as two Pipedrive companies do not)."""

    rng: random.Random
    by_entity: dict[str, list[FieldDef]] = field(default_factory=dict)
    next_option_id: int = 0

    def __post_init__(self) -> None:
        self.next_option_id = self.rng.randint(10, 900)
        for entity in (DEALS, ORGANIZATIONS):
            self.by_entity[entity] = builtin_fields(entity)

    def add_custom(
        self, entity: str, name: str, field_type: str, options: list[str] | None = None
    ) -> FieldDef:
        existing = self.custom_by_name(entity, name)
        if existing is not None:
            return existing
        key = hashlib.sha1(self.rng.getrandbits(160).to_bytes(20, "big")).hexdigest()
        opts = None
        if field_type in OPTION_TYPES:
            opts = []
            for label in options or ():
                opts.append({"id": self.next_option_id, "label": label})
                self.next_option_id += 1
        fdef = FieldDef(key, name, field_type, is_custom_field=True, options=opts, writable=True)
        self.by_entity[entity].append(fdef)
        return fdef

    def remove(self, entity: str, code_or_name: str) -> FieldDef:
        for fdef in self.by_entity[entity]:
            if fdef.is_custom_field and code_or_name in (fdef.field_code, fdef.field_name):
                self.by_entity[entity].remove(fdef)
                return fdef
        raise KeyError(f"{entity}: no custom field {code_or_name!r}")

    def custom(self, entity: str) -> list[FieldDef]:
        return [f for f in self.by_entity[entity] if f.is_custom_field]

    def custom_by_name(self, entity: str, name: str) -> FieldDef | None:
        return next((f for f in self.custom(entity) if f.field_name == name), None)

    def custom_by_key(self, entity: str) -> dict[str, FieldDef]:
        return {f.field_code: f for f in self.custom(entity)}

    def builtin(self, entity: str) -> dict[str, FieldDef]:
        return {f.field_code: f for f in self.by_entity[entity] if not f.is_custom_field}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_date(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _DATE.match(value):
        raise InputError(f"{name}: expected a date as YYYY-MM-DD, received {value!r}")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{name}: invalid date {value!r}") from exc


def check_custom_value(fdef: FieldDef, value: Any, user_ids: Collection[int]) -> None:
    """Raise ``InputError`` unless ``value`` is what v2 accepts for this custom field."""
    name = f"custom_fields.{fdef.field_code}"
    if value is None:
        return
    kind = fdef.field_type
    if kind in TEXT_TYPES:
        if not isinstance(value, str):
            raise InputError(f"{name}: expected string, received {type(value).__name__}")
    elif kind == "double":
        if not _is_number(value):
            raise InputError(f"{name}: expected number, received {type(value).__name__}")
    elif kind in ("int", "user", "org", "people", "deal"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name}: expected integer, received {type(value).__name__}")
        if kind == "user" and value not in user_ids:
            raise InputError(f"{name}: user {value} does not exist")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InputError(f"{name}: expected boolean, received {type(value).__name__}")
    elif kind == "date":
        _check_date(name, value)
    elif kind == "enum":
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name}: expected an option id (integer), received {value!r}")
        if value not in fdef.option_ids():
            raise InputError(f"{name}: option id {value} does not exist")
    elif kind == "set":
        if not isinstance(value, list):
            raise InputError(f"{name}: expected an array of option ids, received {value!r}")
        if not value:
            raise InputError(f"{name}: empty array is not supported, send null to clear")
        known = fdef.option_ids()
        for item in value:
            if not isinstance(item, int) or isinstance(item, bool) or item not in known:
                raise InputError(f"{name}: option id {item!r} does not exist")
    elif kind == "monetary":
        if (
            not isinstance(value, dict)
            or set(value) - {"value", "currency"}
            or not _is_number(value.get("value"))
            or not isinstance(value.get("currency"), str)
            or not _CURRENCY.match(value["currency"])
        ):
            raise InputError(f"{name}: expected {{value: number, currency: 'ISO code'}}")
    else:
        raise InputError(f"{name}: field type {kind} cannot be written through this API")


# Built-in PATCH body keys -> (json type check, message). Unknown keys are refused.
def check_builtin_value(
    entity: str, key: str, value: Any, ctx: Mapping[str, Collection[int]]
) -> None:
    name = key
    if key in ("title", "name", "currency", "lost_reason", "website", "linkedin", "status"):
        if value is None and key in ("lost_reason", "website", "linkedin"):
            return
        if not isinstance(value, str):
            raise InputError(f"{name}: expected string, received {type(value).__name__}")
        if key == "currency" and not _CURRENCY.match(value):
            raise InputError(f"{name}: expected an ISO 4217 code, received {value!r}")
        if key == "status" and value not in ("open", "won", "lost"):
            raise InputError(f"{name}: must be one of open, won, lost")
        if key in ("title", "name") and not value.strip():
            raise InputError(f"{name}: must not be empty")
    elif key in ("value", "probability"):
        if not (_is_number(value) or (value is None and key == "probability")):
            raise InputError(f"{name}: expected number, received {type(value).__name__}")
    elif key in ("owner_id", "org_id", "person_id", "stage_id", "pipeline_id", "visible_to",
                 "annual_revenue", "employee_count", "industry"):
        if value is None and key in ("org_id", "person_id", "industry", "annual_revenue",
                                     "employee_count"):
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name}: expected integer, received {type(value).__name__}")
        if key == "owner_id" and value not in ctx["users"]:
            raise InputError(f"{name}: user {value} does not exist")
        if key == "org_id" and value not in ctx["orgs"]:
            raise InputError(f"{name}: organization {value} does not exist")
    elif key == "expected_close_date":
        if value is not None:
            _check_date(name, value)
    elif key == "label_ids":
        if not isinstance(value, list) or not all(isinstance(i, int) for i in value):
            raise InputError(f"{name}: expected an array of integers")
    elif key == "address":
        if value is not None and (
            not isinstance(value, dict)
            or any(k not in _ADDRESS_PARTS or not isinstance(v, str) for k, v in value.items())
        ):
            raise InputError(f"{name}: expected an address object of strings")
    else:
        raise InputError(f"{name}: unknown or read-only field for {entity}")
