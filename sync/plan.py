"""Plan: desired output values per record -> vendor field values -> only the differences.

Each desired value is filtered for the connection's audience (:mod:`sync.visibility`),
converted through the connection's mapping, then compared with the value just read
from the CRM and with the ledger of what we last wrote. A value already in the CRM is
never written again, so a cycle with no change plans nothing and our own echoes never
cause a write. Fields with the ``human_wins`` policy are left alone once a person has
changed them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sync.visibility import Audience, Secrets, is_dropped, visible_value

Key = tuple[str, str, str]  # (connection, entity, external_id)


class WriteSpec(Protocol):
    """A compiled ``writes:`` entry of a mapping."""

    @property
    def field(self) -> str: ...

    @property
    def policy(self) -> str: ...

    def to_vendor(self, value: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Target:
    """What the planner knows about one connection."""

    audience: Audience
    writes: Mapping[str, Mapping[str, WriteSpec]]  # entity -> output -> spec


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    connection: str
    entity: str
    external_id: str
    field: str
    value: Any
    previous: Any
    output: str
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A difference we chose not to write, and why (shown by ``plan``)."""

    connection: str
    entity: str
    external_id: str
    field: str
    value: Any
    current: Any
    why: str


def plan_writes(
    *,
    desired: Mapping[Key, Mapping[str, Any]],
    rules: Mapping[Key, str],
    targets: Mapping[str, Target],
    current: Mapping[Key, Mapping[str, Any]],
    ledger: Mapping[str, Mapping[tuple[str, str, str], Any]],
    secrets: Secrets,
    in_flight: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
) -> tuple[list[PlannedWrite], list[HeldBack]]:
    """Every write needed to make the CRMs show ``desired``; nothing else.

    ``in_flight`` holds the values open outbox items are writing: a CRM value equal to one
    of them is ours (its booking may have been lost), never a person's edit."""
    writes: list[PlannedWrite] = []
    held: list[HeldBack] = []
    for key, outputs in desired.items():
        connection, entity, external_id = key
        target = targets.get(connection)
        if target is None or key not in current:
            continue  # the record is gone or its connection is not configured
        specs = target.writes.get(entity, {})
        fields_now = current[key]
        last_written = ledger.get(connection, {})
        writing = in_flight.get(connection, {}) if in_flight else {}
        for output, raw_value in outputs.items():
            spec = specs.get(output)
            if spec is None:
                continue
            value = visible_value(output, raw_value, target.audience, secrets)
            if is_dropped(value):
                continue
            vendor_value = spec.to_vendor(value)
            now_value = fields_now.get(spec.field)
            if same_value(now_value, vendor_value):
                continue
            last = last_written.get((entity, external_id, spec.field), _MISSING)
            if spec.policy == "human_wins":
                field_key = (entity, external_id, spec.field)
                ours = field_key in writing and same_value(now_value, writing[field_key])
                why = None if ours else _human_edit(now_value, last)
                if why:
                    held.append(
                        HeldBack(
                            connection,
                            entity,
                            external_id,
                            spec.field,
                            vendor_value,
                            now_value,
                            why,
                        )
                    )
                    continue
            writes.append(
                PlannedWrite(
                    connection=connection,
                    entity=entity,
                    external_id=external_id,
                    field=spec.field,
                    value=vendor_value,
                    previous=now_value,
                    output=output,
                    rule=rules.get(key, "policy"),
                    reason=_text(value),
                )
            )
    return writes, held


_MISSING = object()


def _human_edit(now_value: Any, last: Any) -> str | None:
    if last is _MISSING:
        if is_blank(now_value):
            return None
        return "set by a person before Channel Sync wrote it (human_wins)"
    if not same_value(now_value, last):
        return "changed by a person since Channel Sync wrote it (human_wins)"
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def same_value(a: Any, b: Any) -> bool:
    """Equality across vendor encodings: "true"/True, "12.0"/12, ""/None, date/ISO text."""
    return _norm(a) == _norm(b)


def _norm(value: Any) -> Any:
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return _decimal_text(Decimal(str(value)))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low in ("true", "false"):
            return low
        try:
            return _decimal_text(Decimal(text))
        except InvalidOperation:
            return text
    if isinstance(value, list | tuple):
        return tuple(_norm(v) for v in value)
    return value


def _decimal_text(d: Decimal) -> str:
    if not d.is_finite():
        return str(d)
    normal = d.normalize()
    return format(normal, "f")


def writes_by_connection(writes: Iterable[PlannedWrite]) -> dict[str, list[PlannedWrite]]:
    out: dict[str, list[PlannedWrite]] = {}
    for w in writes:
        out.setdefault(w.connection, []).append(w)
    return out
