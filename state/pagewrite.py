"""The page upsert, built for speed: values prepared once, then one statement per page.

Binding thousands of rows through SQLAlchemy's per-value processors costs more than the
database spends storing them, and psycopg re-parses every large multi-row statement.
So values are checked and put into each database's storage form here, once:
PostgreSQL gets the whole page as one JSON parameter expanded by ``jsonb_to_recordset``;
SQLite gets plain tuples through the driver's executemany of a precompiled statement.
Stored and incoming values then compare exactly for change detection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from config.canonical import FIELDS_BY_ENTITY
from state.rows import RecordKey
from state.tables import RECORD_TABLES, table
from state.types import NUL_REPLACEMENT, dumps_json

CANONICAL_FIELDS: dict[str, tuple[str, ...]] = {
    entity: tuple(spec) for entity, spec in FIELDS_BY_ENTITY.items()
}
META_FIELDS = ("vendor_modified_at", "etag", "raw")
META_KINDS = {"vendor_modified_at": "datetime", "etag": "string", "raw": "json"}
# Order matters: page_payload appends these values in this order after the fields.
BOOKKEEPING = ("connection", "external_id", "deleted", "seen_generation",
               "changed_generation", "updated_at")


def record_table(entity: str) -> sa.Table:
    model = RECORD_TABLES.get(entity)
    if model is None:
        raise ValueError(f"unknown entity {entity!r}: expected one of {sorted(RECORD_TABLES)}")
    return table(model)


def _kinds(entity: str) -> dict[str, str]:
    return {**FIELDS_BY_ENTITY[entity], **META_KINDS}


def record_keys_where(
    conn: sa.Connection, condition: Callable[[sa.Table], sa.ColumnElement[bool]]
) -> set[RecordKey]:
    """Keys of account and opportunity rows matching ``condition(table)``."""
    keys: set[RecordKey] = set()
    for entity in RECORD_TABLES:
        tbl = record_table(entity)
        query = sa.select(tbl.c.connection, tbl.c.external_id).where(condition(tbl))
        keys.update(RecordKey(c, entity, e) for c, e in conn.execute(query))
    return keys


@cache
def insert_columns(entity: str) -> tuple[str, ...]:
    """The upsert's columns in table order (the order SQLite's compiled statement binds)."""
    wanted = {*CANONICAL_FIELDS[entity], *META_FIELDS, *BOOKKEEPING}
    return tuple(column.name for column in record_table(entity).c if column.name in wanted)


Rejected = tuple[str | None, str, Any]
"""A row that cannot be stored: (external id, reason, the row) -- kept as a skipped record."""


def page_payload(
    dialect: str,
    connection: str,
    entity: str,
    rows: Sequence[Mapping[str, Any]],
    run_id: int,
    now: datetime,
) -> tuple[list[str], Any, list[Rejected]]:
    """Check and convert rows; return their external ids (a later duplicate wins), the
    statement parameters (the JSON page on PostgreSQL, one tuple per row on SQLite) and the
    rows rejected for bad values. Unknown field names are a programming error and raise."""
    for_sqlite = dialect == "sqlite"
    rejected: list[Rejected] = []
    fields, bookkeeping_slots = _layout(entity)
    allowed = {"external_id", *(name for name, _, _ in fields)}
    stamp = _datetime_value(now, for_sqlite)
    width = len(insert_columns(entity))
    by_id: dict[str, list[Any]] = {}
    for index, row in enumerate(rows):
        ext_id = row.get("external_id")
        if isinstance(ext_id, int) and not isinstance(ext_id, bool):
            ext_id = str(ext_id)
        if len(row) > len(allowed) or not allowed.issuperset(row):
            raise ValueError(
                f"{connection}/{entity} record {ext_id}: unknown fields "
                f"{sorted(set(row) - allowed)}"
            )
        if not isinstance(ext_id, str) or not ext_id:
            reason = f"page row {index}: external_id must be a non-empty string, got {ext_id!r}"
            rejected.append((None, reason, dict(row)))
            continue
        values: list[Any] = [None] * width
        get = row.get
        for name, kind, slot in fields:
            value = get(name)
            if value is None:
                continue
            if kind == "string" and type(value) is str and "\x00" not in value:
                values[slot] = value
                continue
            try:
                values[slot] = _convert(kind, value, for_sqlite)
            except (TypeError, ValueError, ArithmeticError) as exc:
                rejected.append((ext_id, f"field {name}: {exc}", dict(row)))
                break
        else:
            bookkeeping = (connection, ext_id, False, run_id, run_id, stamp)
            _finish_row(values, bookkeeping_slots, bookkeeping)
            by_id[ext_id] = values
    if for_sqlite:
        return list(by_id), [tuple(values) for values in by_id.values()], rejected
    names = insert_columns(entity)
    page = [dict(zip(names, values, strict=True)) for values in by_id.values()]
    return list(by_id), {"rows": orjson.dumps(page).decode()}, rejected


def _finish_row(values: list[Any], slots: tuple[int, ...], bookkeeping: tuple[Any, ...]) -> None:
    for slot, value in zip(
slots, bookkeeping, strict=True):
        values[slot] = value


@cache
def _layout(entity: str) -> tuple[tuple[tuple[str, str, int], ...], tuple[int, ...]]:
    """(field, kind, slot) for canonical and meta fields; slots of the BOOKKEEPING values."""
    kinds = _kinds(entity)
    slot = {name: index for index, name in enumerate(insert_columns(entity))}
    names = (*CANONICAL_FIELDS[entity], *META_FIELDS)
    fields = tuple((name, kinds[name], slot[name]) for name in names)
    return fields, tuple(slot[name] for name in BOOKKEEPING)


def _convert(kind: str, value: Any, for_sqlite: bool) -> Any:
    # Lenient where the meaning is unambiguous (integer ids, ISO text, numeric text).
    if kind == "string":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
        return value.replace("\x00", NUL_REPLACEMENT)
    if kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=UTC)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")
        return _datetime_value(value, for_sqlite)
    if kind == "date":
        if isinstance(value, str):
            value = date.fromisoformat(value[:10])  # a date, or the date of an ISO datetime
        if isinstance(value, datetime):
            value = value.date()
        if not isinstance(value, date):
            raise TypeError(f"expected a date, got {type(value).__name__} {value!r}")
        return value.isoformat()
    if kind == "decimal":
        if isinstance(value, str):
            value = Decimal(value.strip())
        if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
            raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
        if not Decimal(value).is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        # SQLite keeps NUMERIC as REAL anyway; PostgreSQL parses the exact decimal text.
        return float(value) if for_sqlite else str(value)
    if kind == "json":
        # Round-trip through the store's serialiser: sorted keys, Decimals as strings.
        return orjson.Fragment(dumps_json(value)) if not for_sqlite else dumps_json(value)
    raise AssertionError(f"no conversion for kind {kind!r}")


def _datetime_value(value: datetime, for_sqlite: bool) -> str:
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if for_sqlite:
        # The exact text SQLAlchemy's SQLite DATETIME stores: UTC, no offset, microseconds.
        return value.isoformat(sep=" ", timespec="microseconds")[:26]
    return value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"


@cache
def postgres_upsert(entity: str, full_refresh: bool) -> Any:
    """INSERT .. SELECT FROM jsonb_to_recordset(:rows) .. ON CONFLICT DO UPDATE (if differing)."""
    tbl = record_table(entity)
    names = insert_columns(entity)
    recordset = (
        sa.func.jsonb_to_recordset(sa.cast(sa.bindparam("rows", type_=sa.Text()), postgresql.JSONB))
        .table_valued(*[sa.column(n, tbl.c[n].type) for n in names])
        .render_derived(name="page", with_types=True)
    )
    insert = postgresql.insert(tbl).from_select(
        list(names), sa.select(*[recordset.c[n] for n in names])
    )
    return _on_conflict(insert, tbl, entity, full_refresh).returning(
        tbl.c.external_id, tbl.c.changed_generation
    )


@cache
def sqlite_upsert(entity: str, full_refresh: bool) -> tuple[str, tuple[str, ...]]:
    """The SQLite upsert as SQL text with ``?`` placeholders, and the column order they bind."""
    tbl = record_table(entity)
    names = insert_columns(entity)
    insert = sqlite.insert(tbl).values({n: sa.bindparam(n) for n in names})
    compiled = _on_conflict(insert, tbl, entity, full_refresh).compile(
        dialect=sqlite.dialect(paramstyle="qmark")
    )
    order = tuple(compiled.positiontup or ())
    if order != names:
        raise AssertionError(f"the {entity} upsert binds {order}, expected {names}")
    return str(compiled), order


def _on_conflict(insert: Any, tbl: sa.Table, entity: str, full_refresh: bool) -> Any:
    """Update a conflicting row only when something differs; only canonical changes move
    ``changed_generation``."""
    excluded = insert.excluded
    canonical_changed = sa.or_(
        tbl.c.deleted,
        *[tbl.c[n].is_distinct_from(excluded[n]) for n in CANONICAL_FIELDS[entity]],
    )
    touched = [canonical_changed, *[tbl.c[n].is_distinct_from(excluded[n]) for n in META_FIELDS]]
    if full_refresh:
        touched.append(tbl.c.seen_generation.is_distinct_from(excluded.seen_generation))
    assignments: dict[str, Any] = {
        n: excluded[n] for n in (*CANONICAL_FIELDS[entity], *META_FIELDS)
    }
    assignments.update(
        deleted=sa.false(),
        deleted_at=sa.null(),
        seen_generation=excluded.seen_generation,
        # Evaluated against the old row, as every expression in SET is.
        changed_generation=sa.case(
            (canonical_changed, excluded.changed_generation), else_=tbl.c.changed_generation
        ),
        updated_at=excluded.updated_at,
    )
    return insert.on_conflict_do_update(
        index_elements=[tbl.c.connection, tbl.c.external_id],
        set_=assignments,
        where=sa.or_(*touched),
    )
