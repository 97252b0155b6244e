"""Field mappings compiled once into frozen values with fast, pure converters.

``CompiledMapping.to_canonical(entity, fields)`` turns a connector's ``Record.fields`` into
canonical values; ``to_vendor(entity, output, value)`` turns a value the engine wants to
write into what the vendor field takes. Data that does not convert raises
``MappingValueError`` (the sync layer skips that record); mistakes in the mapping itself
are config problems reported with file and line by ``config.mapping_compiler``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from config.converters import Converter

WritePolicy = Literal["middleware", "human_wins"]


class MappingValueError(ValueError):
    """A record value the mapping cannot convert; names the vendor field and the reason."""

    def __init__(self, entity: str, vendor_field: str, canonical: str, reason: str) -> None:
        self.entity = entity
        self.vendor_field = vendor_field
        self.canonical = canonical
        self.reason = reason
        super().__init__(f"{entity} field '{vendor_field}' (-> {canonical}): {reason}")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one canonical field is read from one vendor field."""

    canonical: str
    field: str  # the vendor field name, as the connector returns it
    type: str
    format: str | None = None
    values: Mapping[Any, Any] | None = None
    default: Any = None
    convert: Converter = dataclasses.field(default=lambda v: v, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """How one output is written to one vendor field, and who wins when a person edits it."""

    output: str
    field: str  # the vendor field name, as the connector takes it
    type: str
    policy: WritePolicy
    entity: str = ""
    format: str | None = None
    values: Mapping[Any, Any] | None = None
    convert: Converter = dataclasses.field(default=lambda v: v, repr=False, compare=False)

    def to_vendor(self, value: Any) -> Any:
        """The vendor value for ``value``; ``MappingValueError`` when it does not convert."""
        try:
            return self.convert(value)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise MappingValueError(self.entity, self.field, self.output, str(exc)) from None


@dataclass(frozen=True, slots=True)
class EntityMapping:
    """One canonical entity in one vendor: its object, the fields read and the outputs written."""

    entity: str
    object_name: str
    fields: Mapping[str, FieldSpec]
    writes: Mapping[str, WriteSpec]
    vendor_fields: tuple[str, ...] = ()  # each vendor field read, once, in mapping order
    _plan: tuple[tuple[str, str, Converter], ...] = dataclasses.field(
        default=(), repr=False, compare=False
    )

    def read_fields(self) -> tuple[str, ...]:
        """Vendor field names to request from the connector."""
        return self.vendor_fields

    def to_canonical(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        get = fields.get
        for canonical, vendor_field, convert in self._plan:
            try:
                out[canonical] = convert(get(vendor_field))
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise MappingValueError(self.entity, vendor_field, canonical, str(exc)) from None
        return out


@dataclass(frozen=True, slots=True)
class CompiledMapping:
    """A vendor mapping: entity name -> ``EntityMapping``. ``source`` is where it came from."""

    vendor: str
    source: str
    entities: Mapping[str, EntityMapping]
    # the YAML data it was compiled from: its converters are closures, so a copy for
    # another process (a full evaluation's second one) is compiled again from this
    data: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        if self.data is None:
            raise TypeError(f"mapping {self.source} was not compiled from data: cannot copy")
        return _recompiled, (self.data, self.vendor, self.source)

    def entity(self, entity: str) -> EntityMapping:
        try:
            return self.entities[entity]
        except KeyError:
            raise KeyError(f"mapping {self.source} has no entity '{entity}'") from None

    def to_canonical(self, entity: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Canonical field -> value for every mapped field (``None`` where the record has none)."""
        return self.entity(entity).to_canonical(fields)

    def read_fields(self, entity: str) -> tuple[str, ...]:
        """Vendor field names to request from the connector (each once, in mapping order)."""
        return self.entity(entity).vendor_fields

    def object_name(self, entity: str) -> str:
        return self.entity(entity).object_name

    def writes(self, entity: str) -> Mapping[str, WriteSpec]:
        """Output -> ``WriteSpec`` for every output this connection writes."""
        return self.entity(entity).writes

    def write_spec(self, entity: str, output: str) -> WriteSpec | None:
        """The spec for ``output``, or ``None`` when this mapping does not write it."""
        mapped = self.entities.get(entity)
        return mapped.writes.get(output) if mapped else None

    def to_vendor(self, entity: str, output: str, value: Any) -> Any:
        """The value to send to the vendor field for ``output``; ``MappingValueError`` if it
        does not convert, ``KeyError`` if the mapping does not write ``output``."""
        spec = self.write_spec(entity, output)
        if spec is None:
            raise KeyError(f"mapping {self.source} does not write {entity}.{output}")
        return spec.to_vendor(value)

    def to_vendor_fields(self, entity: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """``{output: value}`` -> ``{vendor field: vendor value}`` for a ``RecordUpdate``."""
        return {
            self.writes(entity)[output].field: self.to_vendor(entity, output, value)
            for output, value in outputs.items()
        }


EMPTY_MAPPING = CompiledMapping(vendor="", source="(none)", entities={})
"""Placeholder used while a config with errors is still being checked; never returned."""


def _recompiled(data: Any, vendor: str, source: str) -> CompiledMapping:
    from config.mapping_compiler import compile_mapping
    from config.yamlsource import YamlDocument

    doc = YamlDocument(file=source, data=data)
    compiled = compile_mapping(doc, data, (), vendor, source=source)
    if compiled is None:  # it compiled once: the same data cannot fail now
        raise ValueError(f"mapping {source} no longer compiles: {doc.problems}")
    return compiled
