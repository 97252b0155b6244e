"""The connector seam: value types and the small protocol every vendor module implements.

A connector speaks its vendor's API and nothing else: no database, no mapping to
canonical fields, no policy. It reads pages of native records (flattened to
``field name -> JSON value``, option ids already resolved to labels), describes the
fields of an entity, and writes batches of field updates, reporting one result per
record. The sync layer persists cursors and decides what to write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Entity(StrEnum):
    """The two canonical entities. Each vendor maps them to its own objects."""

    ACCOUNT = "account"
    OPPORTUNITY = "opportunity"


JSONValue = Any
"""A value as JSON would carry it (str, int, float, bool, None, list, dict)."""

Cursor = Mapping[str, JSONValue]
"""Opaque, JSON-serialisable read position owned by the connector."""


@dataclass(frozen=True, slots=True)
class Record:
    """One native record as read: vendor id, modification time and flattened fields."""

    id: str
    modified_at: datetime
    fields: Mapping[str, JSONValue]
    deleted: bool = False
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record the connector could not decode; kept with its reason, never dropped silently."""

    id: str | None
    reason: str
    payload: JSONValue = None


@dataclass(frozen=True, slots=True)
class Page:
    """A page of records and the cursor that is valid once the page is stored.

    ``full_refresh`` is true on every page of a read that started from scratch
    (first sync, expired delta token, delete window exceeded): when such a read
    ends, records of the entity that it did not return are gone from the CRM.
    ``complete`` is true on the last page of a read.
    """

    records: Sequence[Record]
    cursor: Cursor
    skipped: Sequence[SkippedRecord] = ()
    full_refresh: bool = False
    complete: bool = False


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the CRM says about one field."""

    name: str
    type: str  # string, text, integer, decimal, boolean, date, datetime, picklist, reference
    label: str = ""
    writable: bool = False
    options: tuple[str, ...] = ()  # picklist labels as the connector returns them
    custom: bool = False


@dataclass(frozen=True, slots=True)
class EntitySchema:
    entity: Entity
    object_name: str
    fields: Mapping[str, FieldInfo]


@dataclass(frozen=True, slots=True)
class RecordUpdate:
    """Field values to write to one record; ``etag`` guards against lost updates where the
    vendor supports it."""

    id: str
    fields: Mapping[str, JSONValue]
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The vendor's verdict on one ``RecordUpdate``.

    ``conflict`` means the record changed since it was read (HTTP 412): re-read and
    re-plan, never overwrite blindly. ``retryable`` means the same write may succeed
    later; otherwise the error is final for these values.
    """

    id: str
    ok: bool
    error: str | None = None
    code: str | None = None
    retryable: bool = False
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """API budget as last seen from the vendor and the share this connection may use."""

    unit: str  # "requests" or "tokens"
    used: int
    limit: int | None
    share_limit: int | None
    window: str  # "day", "10s", "5min", ...
    details: Mapping[str, JSONValue] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    """What the sync layer needs from a CRM."""

    vendor: str

    def describe(self, entity: Entity) -> EntitySchema:
        """Fields of the entity as the CRM defines them now."""
        ...

    def read(
        self, entity: Entity, cursor: Cursor | None, fields: Sequence[str]
    ) -> Iterator[Page]:
        """Pages changed since ``cursor`` (everything when ``None``), oldest first.

        ``fields`` are the vendor field names the mapping needs; the connector adds what
        it needs itself (ids, timestamps, associations).
        """
        ...

    def write(self, entity: Entity, updates: Sequence[RecordUpdate]) -> Sequence[WriteResult]:
        """Write field values, batching as the vendor allows; one result per update, in order."""
        ...

    def budget(self) -> BudgetStatus:
        """The quota as last seen."""
        ...

    def close(self) -> None:
        """Release sessions and pools."""
        ...


def field_values(records: Sequence[Record], name: str) -> list[JSONValue]:
    """Convenience for tests and diagnostics: one field across records."""
    return [r.fields.get(name) for r in records]


def did_you_mean(name: str, candidates: Sequence[str], *, cutoff: float = 0.6) -> str:
    """A ``" (did you mean 'X'?)"`` hint for a field name that does not exist, or ``""``.
    A name that differs only in case is always suggested."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    if not close:
        lowered = name.lower()
        close = [c for c in candidates if c.lower() == lowered]
    return f" (did you mean '{close[0]}'?)" if close else ""


def require_fields(schema: EntitySchema, wanted: Sequence[str]) -> None:
    """Raise ``SchemaDriftError`` naming every wanted field the CRM no longer has."""
    from connectors.errors import SchemaDriftError

    missing = tuple(f for f in wanted if f not in schema.fields)
    if missing:
        raise SchemaDriftError(
            f"{schema.object_name}: mapped field(s) missing from the CRM: {', '.join(missing)}",
            entity=schema.entity.value,
            fields=missing,
        )


__all__ = [
    "BudgetStatus",
    "Connector",
    "Cursor",
    "Entity",
    "EntitySchema",
    "FieldInfo",
    "JSONValue",
    "Page",
    "Record",
    "RecordUpdate",
    "SkippedRecord",
    "WriteResult",
    "did_you_mean",
    "field_values",
    "require_fields",
]
