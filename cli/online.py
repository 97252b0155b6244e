"""``check-config --online``: every mapped field checked against each live CRM schema."""

from __future__ import annotations

from typing import Any

from connectors.base import Entity
from connectors.errors import ConnectorError
from connectors.http import RetryPolicy
from wiring import build_connector


def mapping_requirements(
    mapping: Any, entity: Entity
) -> tuple[dict[str, str | None], dict[str, tuple[str | None, list[Any]]]]:
    """What the mapping reads (vendor field -> canonical type) and writes (vendor field ->
    (type, the vendor values it may write))."""
    spec = mapping.entity(entity)
    reads: dict[str, str | None] = {}
    for field in spec.fields.values():
        reads.setdefault(field.field, field.type)
    writes: dict[str, tuple[str | None, list[Any]]] = {}
    for write in spec.writes.values():
        values = sorted({str(v) for v in (write.values or {}).values() if v is not None})
        writes[write.field] = (write.type, values)
    return reads, writes


def check_online(settings: Any) -> dict[str, list[str]]:
    """Problems per connection (an empty list: every mapped field fits)."""
    problems: dict[str, list[str]] = {}
    for conn in settings.enabled_connections:
        found: list[str] = []
        # an interactive check: fail fast rather than ride out a long outage
        connector = build_connector(conn, retry=RetryPolicy(attempts=2, max_wait=2.0))
        try:
            for entity in Entity:
                if entity.value not in conn.mapping.entities:
                    continue
                reads, writes = mapping_requirements(conn.mapping, entity)
                for problem in connector.check_mapping(entity, reads, writes):  # type: ignore[attr-defined]  # every vendor connector has it; not part of the sync protocol
                    found.append(f"{entity.value}: {problem}")
        except ConnectorError as exc:
            found.append(f"cannot reach the CRM: {type(exc).__name__}: {exc}")
        finally:
            connector.close()
        problems[conn.name] = found
    return problems
