"""Checks a mapping (file or inline) and compiles it into a ``CompiledMapping``.

Every mistake becomes a problem with the mapping's file, line and key path: unknown
canonical fields and outputs, unknown types and formats, value maps that are not maps or
whose values do not fit the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.canonical import (
    DECISIONS,
    FIELDS_BY_ENTITY,
    HUMAN_WINS_BY_DEFAULT,
    OUTPUTS_BY_ENTITY,
    REGISTRATION_STATES,
    STAGE_CATEGORIES,
)
from config.converters import TYPES, base_reader, check_format, reader, writer
from config.errors import Path_, did_you_mean
from config.mapping import CompiledMapping, EntityMapping, FieldSpec, WriteSpec
from config.yamlsource import YamlDocument, parse_yaml

VOCABULARY: dict[str, frozenset[str]] = {
    "stage_category": STAGE_CATEGORIES,
    "registration_status": frozenset(REGISTRATION_STATES),
    "registration_decision": DECISIONS,
}
_TOP_KEYS = ("vendor", "entities", "description")
_ENTITY_KEYS = ("object", "fields", "writes")
_FIELD_KEYS = ("field", "type", "format", "values", "default")
_WRITE_KEYS = ("field", "type", "format", "values", "policy")
_POLICIES = ("middleware", "human_wins")


def load_mapping_file(
    path: Path, display: str, vendor: str
) -> tuple[CompiledMapping | None, YamlDocument]:
    """Parse and compile a mapping file; problems are in the returned document."""
    doc = parse_yaml(path.read_text(encoding="utf-8"), display)
    if doc.problems:
        return None, doc
    return compile_mapping(doc, doc.data, (), vendor, source=display), doc


def compile_mapping(
    doc: YamlDocument, data: Any, at: Path_, vendor: str, *, source: str
) -> CompiledMapping | None:
    """Compile ``data`` (found at key path ``at`` of ``doc``); ``None`` if it has problems."""
    before = len(doc.problems)
    if not isinstance(data, dict):
        doc.problem(at, "a mapping must be a YAML mapping with 'entities'")
        return None
    _unknown_keys(doc, data, at, _TOP_KEYS)
    declared = data.get("vendor")
    if declared is not None and declared != vendor:
        doc.problem((*at, "vendor"), f"mapping is for '{declared}' but the connection is {vendor}")
    entities_raw = data.get("entities")
    entities: dict[str, EntityMapping] = {}
    if not isinstance(entities_raw, dict) or not entities_raw:
        doc.problem((*at, "entities"), "needs at least one of: account, opportunity")
    else:
        for name, body in entities_raw.items():
            path = (*at, "entities", str(name))
            if name not in FIELDS_BY_ENTITY:
                doc.problem(
                    path, f"unknown entity '{name}'" + did_you_mean(str(name), FIELDS_BY_ENTITY)
                )
                continue
            compiled = _compile_entity(doc, name, body, path)
            if compiled is not None:
                entities[name] = compiled
    if len(doc.problems) > before:
        return None
    return CompiledMapping(vendor=vendor, source=source, entities=entities, data=data)


def _unknown_keys(
    doc: YamlDocument, data: dict[Any, Any], at: Path_, allowed: tuple[str, ...]
) -> None:
    for key in data:
        if key not in allowed:
            doc.problem((*at, str(key)), f"unknown key '{key}'" + did_you_mean(str(key), allowed))


def _compile_entity(doc: YamlDocument, entity: str, body: Any, at: Path_) -> EntityMapping | None:
    if not isinstance(body, dict):
        doc.problem(at, "expected a mapping with object, fields and writes")
        return None
    _unknown_keys(doc, body, at, _ENTITY_KEYS)
    object_name = body.get("object")
    if not isinstance(object_name, str) or not object_name:
        doc.problem((*at, "object"), "required: the vendor object name (text)")
    fields: dict[str, FieldSpec] = {}
    raw_fields = body.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        doc.problem((*at, "fields"), "required: canonical field -> vendor field")
    else:
        for canonical, spec in raw_fields.items():
            built = _compile_field(
                doc, entity, str(canonical), spec, (*at, "fields", str(canonical))
            )
            if built is not None:
                fields[built.canonical] = built
    writes: dict[str, WriteSpec] = {}
    raw_writes = body.get("writes") or {}
    if not isinstance(raw_writes, dict):
        doc.problem((*at, "writes"), "expected output -> vendor field")
    else:
        for output, spec in raw_writes.items():
            built_write = _compile_write(
                doc, entity, str(output), spec, (*at, "writes", str(output))
            )
            if built_write is not None:
                writes[built_write.output] = built_write
    if not isinstance(object_name, str):
        return None
    read_fields = tuple(dict.fromkeys(spec.field for spec in fields.values()))
    plan = tuple((s.canonical, s.field, s.convert) for s in fields.values())
    return EntityMapping(entity, object_name, fields, writes, read_fields, plan)


def _spec_parts(
    doc: YamlDocument, spec: Any, at: Path_, allowed: tuple[str, ...]
) -> dict[str, Any] | None:
    if isinstance(spec, str) and spec:
        return {"field": spec}
    if not isinstance(spec, dict):
        doc.problem(at, "expected a vendor field name or {field: ..., type: ..., values: ...}")
        return None
    _unknown_keys(doc, spec, at, allowed)
    if not isinstance(spec.get("field"), str) or not spec["field"]:
        doc.problem((*at, "field"), "required: the vendor field name")
        return None
    return spec


def _type_and_format(
    doc: YamlDocument, spec: dict[str, Any], at: Path_, default_type: str
) -> tuple[str, str | None] | None:
    type_ = spec.get("type", default_type)
    if type_ not in TYPES:
        doc.problem(
            (*at, "type"),
            f"unknown type '{type_}'; use one of {', '.join(TYPES)}"
            + did_you_mean(str(type_), TYPES),
        )
        return None
    fmt = spec.get("format")
    reason = (
        check_format(type_, fmt) if fmt is None or isinstance(fmt, str) else "format must be text"
    )
    if reason:
        doc.problem((*at, "format"), reason)
        return None
    return type_, fmt


def _compile_field(
    doc: YamlDocument, entity: str, canonical: str, spec: Any, at: Path_
) -> FieldSpec | None:
    known = FIELDS_BY_ENTITY[entity]
    if canonical not in known:
        doc.problem(
            at,
            f"unknown canonical field '{canonical}' for {entity}" + did_you_mean(canonical, known),
        )
        return None
    parts = _spec_parts(doc, spec, at, _FIELD_KEYS)
    if parts is None:
        return None
    canonical_type = known[canonical]
    typed = _type_and_format(doc, parts, at, canonical_type)
    if typed is None:
        return None
    type_, fmt = typed
    if type_ != canonical_type:
        doc.problem((*at, "type"), f"{entity}.{canonical} is a {canonical_type}, not a {type_}")
        return None
    check = base_reader(type_, fmt)
    allowed = VOCABULARY.get(canonical)
    values = parts.get("values")
    if values is not None and not _check_value_map(
        doc, values, (*at, "values"), check, allowed, targets=True
    ):
        return None
    default = parts.get("default")
    if default is not None:
        try:
            default = check(default)
        except ValueError as exc:
            doc.problem((*at, "default"), f"default does not fit a {type_}: {exc}")
            return None
    return FieldSpec(
        canonical=canonical,
        field=parts["field"],
        type=type_,
        format=fmt,
        values=values,
        default=default,
        convert=reader(type_, fmt, values, default, allowed),
    )


def _check_value_map(
    doc: YamlDocument,
    values: Any,
    at: Path_,
    check: Any,
    allowed: frozenset[str] | None,
    *,
    targets: bool,
) -> bool:
    """Reads check the mapped-to values (canonical side); writes check the keys."""
    if not isinstance(values, dict) or not values:
        doc.problem(at, "values must be a non-empty mapping (vendor value: canonical value)")
        return False
    ok = True
    for key, target in values.items():
        canonical_value = target if targets else key
        if not targets and key == "*":
            continue
        if canonical_value is None:
            continue
        try:
            converted = check(canonical_value)
        except ValueError as exc:
            doc.problem((*at, str(key)), f"bad value map entry: {exc}")
            ok = False
            continue
        if allowed is not None and converted not in allowed:
            doc.problem(
                (*at, str(key)),
                f"'{canonical_value}' is not one of {', '.join(sorted(allowed))}"
                + did_you_mean(str(canonical_value), allowed),
            )
            ok = False
    return ok


def _compile_write(
    doc: YamlDocument, entity: str, output: str, spec: Any, at: Path_
) -> WriteSpec | None:
    known = OUTPUTS_BY_ENTITY[entity]
    if output not in known:
        doc.problem(at, f"unknown output '{output}' for {entity}" + did_you_mean(output, known))
        return None
    parts = _spec_parts(doc, spec, at, _WRITE_KEYS)
    if parts is None:
        return None
    typed = _type_and_format(doc, parts, at, known[output])
    if typed is None:
        return None
    type_, fmt = typed
    policy = parts.get("policy", "human_wins" if output in HUMAN_WINS_BY_DEFAULT else "middleware")
    if policy not in _POLICIES:
        doc.problem((*at, "policy"), f"unknown policy '{policy}'; use middleware or human_wins")
        return None
    values = parts.get("values")
    check = base_reader(known[output], None)
    if values is not None and not _check_value_map(
        doc, values, (*at, "values"), check, VOCABULARY.get(output), targets=False
    ):
        return None
    return WriteSpec(
        output=output,
        field=parts["field"],
        type=type_,
        policy=policy,
        entity=entity,
        format=fmt,
        values=values,
        convert=writer(type_, fmt, values),
    )
