"""HubSpot properties as connector field descriptions, and the online mapping check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import EntitySchema, FieldInfo, did_you_mean

ASSOCIATED_COMPANY = "associatedcompanyid"
# canonical type expected by the mapping -> connector field types that can carry it
COMPATIBLE: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "text", "picklist", "reference", "decimal", "integer",
                         "date", "datetime", "boolean"}),
    "decimal": frozenset({"decimal", "integer"}),
    "integer": frozenset({"integer", "decimal"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime", "date"}),
    "boolean": frozenset({"boolean"}),
}


def field_info(prop: Mapping[str, Any]) -> FieldInfo:
    """One property from ``/crm/v3/properties/{objectType}`` as a FieldInfo."""
    kind, field_type = str(prop.get("type", "string")), str(prop.get("fieldType", ""))
    if kind == "bool" or field_type == "booleancheckbox":
        ftype = "boolean"
    elif kind == "enumeration":
        ftype = "picklist"
    elif kind == "number":
        ftype = "integer" if prop.get("name") == "hs_object_id" else "decimal"
    elif kind in ("date", "datetime"):
        ftype = kind
    else:
        ftype = "text" if field_type == "textarea" else "string"
    meta = prop.get("modificationMetadata") or {}
    writable = not (meta.get("readOnlyValue") or prop.get("calculated"))
    options = tuple(str(o.get("value")) for o in prop.get("options") or [] if "value" in o)
    return FieldInfo(
        name=str(prop["name"]), type=ftype, label=str(prop.get("label") or ""),
        writable=bool(writable), options=options,
        custom=not bool(prop.get("hubspotDefined", False)),
    )


def synthetic_company_field() -> FieldInfo:
    """The deal's primary company id, added by the connector from Associations v4."""
    return FieldInfo(name=ASSOCIATED_COMPANY, type="reference",
                     label="Primary company (association)", writable=False)


def check_mapping(
    schema: EntitySchema,
    reads: Mapping[str, str | None],
    writes: Mapping[str, tuple[str | None, Sequence[Any]]],
) -> list[str]:
    """Problems with mapped fields, one readable line each (empty when all is well)."""
    problems: list[str] = []
    fields = schema.fields
    where = f"HubSpot {schema.object_name}"

    def missing(name: str, role: str) -> str:
        return f"{where}: {role} field '{name}' does not exist{did_you_mean(name, list(fields))}"

    def fits(name: str, expected: str | None, info: FieldInfo, role: str) -> None:
        if expected and info.type not in COMPATIBLE.get(expected, frozenset({info.type})):
            problems.append(
                f"{where}: {role} field '{name}' is {info.type}, which cannot hold a {expected}"
            )

    for name, expected in reads.items():
        info = fields.get(name)
        if info is None:
            problems.append(missing(name, "read"))
        else:
            fits(name, expected, info, "read")
    for name, (expected, values) in writes.items():
        info = fields.get(name)
        if info is None:
            problems.append(missing(name, "write"))
            continue
        if not info.writable:
            problems.append(f"{where}: write field '{name}' is read-only in HubSpot")
        fits(name, expected, info, "write")
        allowed = set(info.options) or ({"true", "false"} if info.type == "boolean" else set())
        if allowed:
            unknown = sorted({_encoded(v) for v in values} - allowed)
            if unknown:
                problems.append(
                    f"{where}: field '{name}' has no option(s) {', '.join(unknown)}; "
                    f"HubSpot knows {', '.join(sorted(allowed))}"
                )
    return problems


def _encoded(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
