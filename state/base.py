"""The Store's common plumbing: engine access, transactions, dialect-specific inserts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from state.engine import READ_ONLY

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
    """Holds the engine; every public Store method runs in exactly one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as connection:
            yield connection

    def _field_values(
        self, tbl: sa.Table, connection: str, keys: Iterable[tuple[str, str]],
        *where: sa.ColumnElement[bool],
    ) -> dict[tuple[str, str, str], Any]:
        """(entity, external id, field) -> value of the rows of ``tbl`` (the ledger, the
        outbox) for one connection's (entity, external id) ``keys``."""
        by_entity: dict[str, set[str]] = {}
        for entity, ext_id in keys:
            by_entity.setdefault(entity, set()).add(ext_id)
        out: dict[tuple[str, str, str], Any] = {}
        if not by_entity:
            return out  # no transaction for nothing (a cycle asks once per connection)
        with self._read() as conn:
            for entity, ids in by_entity.items():
                for chunk in chunked(sorted(ids)):
                    query = sa.select(tbl.c.external_id, tbl.c.field, tbl.c.value).where(
                        tbl.c.connection == connection, tbl.c.entity == entity,
                        tbl.c.external_id.in_(chunk), *where)
                    out.update(((entity, e, f), v) for e, f, v in conn.execute(query))
        return out

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._reader.connect() as connection:
            yield connection

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ON CONFLICT on the current dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
