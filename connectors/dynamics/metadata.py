"""Dataverse table metadata as the connector needs it, and the online mapping check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.base import Entity, EntitySchema, FieldInfo, did_you_mean

LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
_FIELD_TYPE = {
    "String": "string", "Memo": "text", "Integer": "integer", "BigInt": "integer",
    "Money": "decimal", "Decimal": "decimal", "Double": "decimal", "Boolean": "boolean",
    "DateTime": "datetime", "Picklist": "picklist", "State": "picklist", "Status": "picklist",
    "Lookup": "reference", "Owner": "reference", "Customer": "reference",
    "Uniqueidentifier": "string", "EntityName": "string",
}
# canonical type -> Dataverse field types it can be read from / written to
_FITS = {
    "string": {"string", "text", "picklist", "reference", "integer", "decimal"},
    "integer": {"integer", "picklist"},
    "decimal": {"decimal", "integer"},
    "boolean": {"boolean"},
    "date": {"datetime", "date", "string"},
    "datetime": {"datetime"},
}
# RetrieveMetadataChanges (Microsoft's "Query schema definitions"): the table, its columns and
# the columns' derived-type details (option sets, date formats) in one call. LogicalName,
# MetadataId and HasChanged always come back.
ENTITY_PROPERTIES = ("EntitySetName", "PrimaryIdAttribute", "PrimaryNameAttribute",
                     "ChangeTrackingEnabled", "Attributes")
ATTRIBUTE_PROPERTIES = ("SchemaName", "AttributeType", "IsCustomAttribute", "IsValidForUpdate",
                        "DisplayName", "OptionSet", "Format")
_SKIPPED_TYPES = ("Virtual", "ManagedProperty", "CalendarRules", "PartyList")


def metadata_query(logical: str) -> bytes:
    """The ``EntityQueryExpression`` (JSON) for one table with every column it reads."""
    def properties(names: tuple[str, ...]) -> dict[str, Any]:
        return {"AllProperties": False, "PropertyNames": list(names)}

    return orjson.dumps({
        "Properties": properties(ENTITY_PROPERTIES),
        "Criteria": {"FilterOperator": "And", "Conditions": [
            {"ConditionOperator": "Equals", "PropertyName": "LogicalName",
             "Value": {"Type": "System.String", "Value": logical}}]},
        "AttributeQuery": {"Properties": properties(ATTRIBUTE_PROPERTIES)},
    })


@dataclass(frozen=True, slots=True)
class Column:
    logical: str
    schema: str
    kind: str  # AttributeType
    custom: bool
    writable: bool
    label: str = ""
    options: Mapping[int, str] = field(default_factory=dict)  # choice value -> label
    date_only: bool = False  # a DateTime column with Format DateOnly

    @property
    def prop(self) -> str:
        return f"_{self.logical}_value" if self.kind in LOOKUP_TYPES else self.logical

    @property
    def nav(self) -> str:
        """Single-valued navigation property used with ``@odata.bind``."""
        return self.schema if self.custom else self.logical

    def option_value(self, label: Any) -> int | None:
        """The integer option for a label (case-insensitive); ints pass if known."""
        if label is None:
            return None
        if isinstance(label, int) and not isinstance(label, bool) and label in self.options:
            return label
        wanted = str(label).strip().casefold()
        for value, text in self.options.items():
            if text.casefold() == wanted:
                return value
        raise ValueError(f"'{label}' is not an option of {self.logical} "
                         f"(options: {', '.join(self.options.values())})")


@dataclass(frozen=True, slots=True)
class TableMeta:
    entity: Entity
    logical: str
    set_name: str
    pk: str
    change_tracking: bool
    columns: Mapping[str, Column]  # by Web API property (_x_value for lookups)
    lookup_names: Mapping[str, Column]  # lookup logical name -> lookup (display-name field)

    def schema(self) -> EntitySchema:
        fields: dict[str, FieldInfo] = {}
        for prop, col in self.columns.items():
            fields[prop] = FieldInfo(
                name=prop, type=_FIELD_TYPE.get(col.kind, "string"), label=col.label,
                writable=col.writable, options=tuple(col.options.values()), custom=col.custom)
        for name, col in self.lookup_names.items():
            fields.setdefault(name, FieldInfo(name=name, type="string",
                                              label=f"{col.label} (name)", custom=col.custom))
        return EntitySchema(entity=self.entity, object_name=self.set_name, fields=fields)


def _label(data: Any) -> str:
    if isinstance(data, dict):
        user = data.get("UserLocalizedLabel") or {}
        return str(user.get("Label") or "")
    return ""


def _options(option_set: Any) -> dict[int, str]:
    if not isinstance(option_set, dict):
        return {}
    if option_set.get("Options") is not None:
        return {int(o["Value"]): _label(o.get("Label")) for o in option_set["Options"]}
    if option_set.get("TrueOption") is not None:
        return {1: _label(option_set["TrueOption"].get("Label")),
                0: _label((option_set.get("FalseOption") or {}).get("Label"))}
    return {}


def parse_table(entity: Entity, definition: Mapping[str, Any]) -> TableMeta:
    """Build table metadata from one ``RetrieveMetadataChanges`` table (ComplexEntityMetadata
    with its Attributes, their OptionSet and Format)."""
    columns: dict[str, Column] = {}
    lookups: dict[str, Column] = {}
    for attr in definition.get("Attributes") or []:
        kind = str(attr.get("AttributeType") or "")
        if kind in _SKIPPED_TYPES:
            continue
        column = Column(
            logical=attr["LogicalName"], schema=str(attr.get("SchemaName") or attr["LogicalName"]),
            kind=kind, custom=bool(attr.get("IsCustomAttribute")),
            writable=bool(attr.get("IsValidForUpdate")), label=_label(attr.get("DisplayName")),
            options=_options(attr.get("OptionSet")) if kind in CHOICE_TYPES else {},
            date_only=attr.get("Format") == "DateOnly")
        columns[column.prop] = column
        if kind in LOOKUP_TYPES:
            lookups[column.logical] = column
    return TableMeta(entity=entity, logical=str(definition["LogicalName"]),
                     set_name=str(definition["EntitySetName"]),
                     pk=str(definition["PrimaryIdAttribute"]),
                     change_tracking=bool(definition.get("ChangeTrackingEnabled")),
                     columns=columns, lookup_names=lookups)


def check_mapping(
    meta: TableMeta,
    reads: Mapping[str, str | None],
    writes: Mapping[str, tuple[str | None, list[str]]],
) -> list[str]:
    """Human-readable problems of mapped fields against the live table."""
    schema = meta.schema()
    date_only = {prop for prop, col in meta.columns.items() if col.date_only}
    problems: list[str] = []
    known = list(schema.fields)

    def missing(name: str, usage: str) -> str:
        return f"{meta.set_name}.{name}: no such column{did_you_mean(name, known)} [{usage}]"

    for name, expected in reads.items():
        info = schema.fields.get(name)
        if info is None:
            problems.append(missing(name, "read"))
        elif expected and info.type not in _FITS.get(expected, {info.type}):
            problems.append(f"{meta.set_name}.{name}: is {info.type}, cannot be read as "
                            f"{expected}")
        elif expected == "datetime" and name in date_only:
            problems.append(f"{meta.set_name}.{name}: is a date-only column, read it as date")
    for name, (expected, values) in writes.items():
        info = schema.fields.get(name)
        if info is None:
            problems.append(missing(name, "write"))
            continue
        if not info.writable:
            problems.append(f"{meta.set_name}.{name}: is not valid for update (read-only)")
        if expected and info.type not in _FITS.get(expected, {info.type}) and not (
                info.type == "boolean" and expected == "boolean"):
            problems.append(f"{meta.set_name}.{name}: is {info.type}, cannot take {expected}")
        if info.type == "picklist":
            labels = {o.casefold() for o in info.options}
            unknown = [v for v in values if v is not None and str(v).casefold() not in labels]
            if unknown:
                problems.append(f"{meta.set_name}.{name}: unknown option(s) "
                                f"{', '.join(map(str, unknown))} (options: "
                                f"{', '.join(info.options)})")
    return problems
