"""The Store's common plumbing: engine access, transactions, dialect-specific inserts."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from itertools import islice
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from state.engine import READ_ONLY
from state.types import dumps_json

T = TypeVar("T")
# Keeps IN lists well below SQLite's bound-variable limit and PG's parameter limit.
CHUNK = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last shorter), without holding them all."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def with_default(row: Any, index: int, default: Any) -> list[Any]:
    """The row's values, with a NULL at ``index`` replaced by ``default``."""
    values = list(row)
    if values[index] is None:
        values[index] = default
    return values


class StoreBase:
    """Holds the engine; every public Store method runs in exactly one transaction, its
    own or, inside :meth:`atomic`, the one they all share."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        self._shared = threading.local()  # this thread's atomic() connection, if any

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every Store call this thread makes inside runs in one write transaction: all
        of it commits or none (an exception rolls it back). Nested, it joins the outer."""
        if getattr(self._shared, "connection", None) is not None:
            yield
            return
        with self.engine.begin() as connection:
            self._shared.connection = connection
            try:
                yield
            finally:
                self._shared.connection = None

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        shared = getattr(self._shared, "connection", None)
        if shared is not None:
            yield shared
            return
        with self.engine.begin() as connection:
            yield connection

    def _fields_by_connection(
        self, tbl: sa.Table, keys: Mapping[str, Iterable[tuple[str, str]]],
        *where: sa.ColumnElement[bool],
    ) -> dict[str, dict[tuple[str, str, str], Any]]:
        """connection -> (entity, external id, field) -> value of the rows of ``tbl`` (the
        ledger, the outbox) for each connection's (entity, external id) ``keys``: one read,
        one statement per 5,000 records whatever the connections and entities. ``where``:
        module constants (the statement is built once per shape)."""
        # unsorted: the keys are looked up through an index, and the result is a mapping
        wanted = list({(c, e, x) for c, pairs in keys.items() for e, x in pairs})
        out: dict[str, dict[tuple[str, str, str], Any]] = {}
        if not wanted:
            return out  # no transaction for nothing (a quiet cycle asks with no keys)
        with self._read() as conn:
            for c, e, x, f, v in self._select_keys(
                    conn, tbl, ("connection", "entity", "external_id", "field", "value"),
                    ("connection", "entity", "external_id"), wanted, where=where):
                out.setdefault(c, {})[(e, x, f)] = v
        return out

    def _select_keys(
        self, conn: sa.Connection, tbl: sa.Table, columns: tuple[str, ...],
        key_columns: tuple[str, ...], keys: Sequence[tuple[str, ...]], *,
        where: tuple[sa.ColumnElement[bool], ...] = (),
    ) -> Iterator[Any]:
        """The ``columns`` of the rows whose ``key_columns`` equal one of ``keys`` (and
        where each of ``where`` holds): one statement per 5,000 keys, the keys bound as one
        parameter (a JSON list on SQLite, one array per column on PostgreSQL), read
        through the table's index on them."""
        query = _keys_query(self.dialect, tbl, columns, key_columns, where)
        for chunk in chunked(keys, 5000):
            params: dict[str, Any]
            if self.dialect == "postgresql":
                params = {f"k{i}": [k[i] for k in chunk] for i in range(len(key_columns))}
            else:
                params = {"keys": dumps_json(list(chunk))}
            yield from conn.execute(query, params)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        shared = getattr(self._shared, "connection", None)
        if shared is not None:  # inside atomic(): see what it wrote so far
            yield shared
            return
        with self._reader.connect() as connection:
            yield connection

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ON CONFLICT on the current dialect."""
        return _dialect_insert(self.dialect, table)

    def _upsert(self, table: sa.Table, keys: tuple[str, ...], updates: tuple[str, ...],
                changed: tuple[str, ...] = ()) -> Any:
        """INSERT ... ON CONFLICT (``keys``) DO UPDATE SET each of ``updates`` to the value
        offered, only where one of ``changed`` differs (when given); run with parameter
        dicts. Built once per dialect and shape: building one makes a proxy of every column
        of the table, which costs more than running it for a few rows."""
        return _upsert(self.dialect, table, keys, updates, changed)


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@cache
def _keys_query(dialect: str, table: sa.Table, columns: tuple[str, ...],
                key_columns: tuple[str, ...], where: tuple[sa.ColumnElement[bool], ...]) -> Any:
    """:meth:`StoreBase._select_keys`'s statement, built once per shape."""
    n = len(key_columns)
    if dialect == "postgresql":
        arrays = ", ".join(f"CAST(:k{i} AS text[])" for i in range(n))
        source = sa.text(f"SELECT * FROM unnest({arrays})")
    else:
        picks = ", ".join(f"value ->> {i}" for i in range(n))
        source = sa.text(f"SELECT {picks} FROM json_each(:keys)")
    rows = source.columns(*[sa.column(f"k{i}", sa.String) for i in range(n)])
    return sa.select(*[table.c[c] for c in columns]).where(
        sa.tuple_(*[table.c[k] for k in key_columns]).in_(rows), *where)


@cache
def _upsert(dialect: str, table: sa.Table, keys: tuple[str, ...], updates: tuple[str, ...],
            changed: tuple[str, ...]) -> Any:
    statement = _dialect_insert(dialect, table)
    offered = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={n: offered[n] for n in updates},
        where=sa.or_(*[table.c[n].is_distinct_from(offered[n]) for n in changed])
        if changed else None)
