"""Salesforce describe results as schemas, field-path checks and mapping findings."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connectors.base import Entity, EntitySchema, FieldInfo, did_you_mean

# Salesforce field type -> the connector's type vocabulary (connectors.base.FieldInfo).
TYPE_NAMES: dict[str, str] = {
    "string": "string", "url": "string", "email": "string", "phone": "string",
    "combobox": "string", "encryptedstring": "string", "textarea": "text",
    "picklist": "picklist", "multipicklist": "picklist", "currency": "decimal",
    "double": "decimal", "percent": "decimal", "int": "integer", "long": "integer",
    "boolean": "boolean", "date": "date", "datetime": "datetime", "id": "reference",
    "reference": "reference",
}
# Canonical value type -> Salesforce types it can be read from / written to.
FITS: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "text", "picklist", "reference", "integer", "decimal"}),
    "decimal": frozenset({"decimal", "integer"}),
    "integer": frozenset({"integer", "decimal"}),
    "boolean": frozenset({"boolean"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime", "date"}),
}

Describer = Callable[[str], Mapping[str, Any]]  # object name -> describe body


def entity_schema(entity: Entity, body: Mapping[str, Any]) -> EntitySchema:
    fields = {}
    for raw in body.get("fields", []):
        fields[raw["name"]] = FieldInfo(
            name=raw["name"],
            type=TYPE_NAMES.get(raw.get("type", ""), "string"),
            label=raw.get("label", ""),
            writable=bool(raw.get("updateable")),
            options=tuple(p["value"] for p in raw.get("picklistValues") or () if p.get("active")),
            custom=bool(raw.get("custom")),
        )
    return EntitySchema(entity=entity, object_name=body.get("name", ""), fields=fields)


class PathResolver:
    """Resolves field paths through relationships, describing each object at most once."""

    def __init__(self, describe: Describer) -> None:
        self._describe = describe
        self._bodies: dict[str, Mapping[str, Any]] = {}

    def body(self, object_name: str) -> Mapping[str, Any]:
        if object_name not in self._bodies:
            self._bodies[object_name] = self._describe(object_name)
        return self._bodies[object_name]

    def resolve(self, object_name: str, path: str) -> tuple[dict[str, Any] | None, str]:
        """(field describe entry, problem); the entry is None when the path is broken."""
        parts = path.split(".")
        current = object_name
        for hop in parts[:-1]:
            fields = self.body(current).get("fields", [])
            ref = next((f for f in fields if (f.get("relationshipName") or "").lower()
                        == hop.lower()), None)
            if ref is None or not ref.get("referenceTo"):
                names = [f["relationshipName"] for f in fields if f.get("relationshipName")]
                return None, f"{current}: no relationship '{hop}'{_did_you_mean(hop, names)}"
            current = ref["referenceTo"][0]
        fields = self.body(current).get("fields", [])
        found = next((f for f in fields if f["name"].lower() == parts[-1].lower()), None)
        if found is None:
            names = [f["name"] for f in fields]
            return None, f"{current}: no field '{parts[-1]}'{_did_you_mean(parts[-1], names)}"
        return found, ""


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    return did_you_mean(name, candidates, cutoff=0.75)


def check_mapping(
    resolver: PathResolver,
    object_name: str,
    reads: Mapping[str, str | None],
    writes: Mapping[str, tuple[str | None, Sequence[Any]]],
) -> list[str]:
    """Problems with mapped fields, each a sentence naming the object and field."""
    problems: list[str] = []
    for name, expected in reads.items():
        entry, problem = resolver.resolve(object_name, name)
        if entry is None:
            problems.append(f"read field {object_name}.{name}: {problem}")
            continue
        problems += _type_problem("read", object_name, name, entry, expected)
    for name, (expected, values) in writes.items():
        entry, problem = resolver.resolve(object_name, name)
        if entry is None:
            problems.append(f"write field {object_name}.{name}: {problem}")
            continue
        if "." in name:
            problems.append(f"write field {object_name}.{name}: a parent's field through a "
                            "relationship cannot be written from this record")
            continue
        if not entry.get("updateable"):
            problems.append(f"write field {object_name}.{name}: not updateable for the "
                            "integration user (read-only, formula or field-level security)")
        problems += _type_problem("write", object_name, name, entry, expected)
        allowed = [p["value"] for p in entry.get("picklistValues") or () if p.get("active")]
        if entry.get("type") in ("picklist", "multipicklist") and allowed:
            unknown = [v for v in values if v is not None and str(v) not in allowed]
            if unknown:
                problems.append(
                    f"write field {object_name}.{name}: picklist value(s) "
                    f"{', '.join(map(repr, unknown))} not among {', '.join(allowed)}")
    return problems


def _type_problem(kind: str, object_name: str, name: str, entry: Mapping[str, Any],
                  expected: str | None) -> list[str]:
    if expected is None:
        return []
    actual = TYPE_NAMES.get(entry.get("type", ""), "string")
    if actual in FITS.get(expected, frozenset({actual})):
        return []
    return [f"{kind} field {object_name}.{name}: Salesforce type {entry.get('type')} does not "
            f"fit the mapped type {expected}"]
