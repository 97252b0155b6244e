"""In-memory Dataverse tables: rows, row versions, the change-tracking log and the
transaction journal that makes ``$batch`` change sets all-or-nothing."""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.dynamics.odata import OrderBy, Predicate, format_datetime
from sandbox.dynamics.schema import TableDef
from sandbox.dynamics.wire import WireForms

Row = dict[str, Any]


class RecordMissingError(KeyError):
    pass


@dataclass(slots=True)
class Table:
    definition: TableDef
    rows: dict[str, Row] = field(default_factory=dict)
    # change log for change tracking: parallel lists, versions ascending
    change_versions: list[int] = field(default_factory=list)
    change_ids: list[str] = field(default_factory=list)
    wires: WireForms = field(default_factory=WireForms)  # rows as JSON, kept at write time
    # primary keys in order once a read asked for it; inserts are appended and sorted in
    # on the next read (one sorted run plus a few new keys: a near-linear merge)
    key_order: list[str] | None = None

    def keys_in_order(self) -> list[str]:
        if self.key_order is None:
            self.key_order = sorted(self.rows)
        else:
            self.key_order.sort()
        return list(self.key_order)  # a snapshot: cached query results must not move


@dataclass(slots=True)
class _Query:
    ids: list[str]  # sorted by the query's order; rows are unchanged while this is cached


class Store:
    """All tables of one environment. Callers hold the app's lock around every call."""

    def __init__(self, tables: Iterable[TableDef], *, clock: Callable[[], datetime]) -> None:
        self.tables: dict[str, Table] = {t.logical: Table(t) for t in tables}
        self.by_set: dict[str, Table] = {t.definition.set_name: t for t in self.tables.values()}
        self.version = 1_000_000  # rowversion: one counter for the whole organisation
        self.data_version = 0  # bumps on every change; invalidates cached query results
        self.pokes = 0  # changes outside the row API: rendered rows are stale
        self.clock = clock
        self._journal: list[tuple[Table, str, Row | None, int]] | None = None
        self._cache: dict[tuple[str, str, str, int], _Query] = {}
        # table -> (memo key, lookup column, annotate) for annotations asked for often,
        # kept from every write on (see WireForms.lookup_memo); set by the app
        self.lookup_presets: Callable[
            [Table], list[tuple[tuple[Any, ...], str, Callable[[bytes], bytes]]]] | None = None

    # -- writes ------------------------------------------------------------------------
    def next_version(self) -> int:
        self.version += 1
        return self.version

    def now_text(self) -> str:
        return format_datetime(self.clock())

    def _journal_entry(self, table: Table, record_id: str) -> None:
        if self._journal is not None:
            old = table.rows.get(record_id)
            self._journal.append((table, record_id, dict(old) if old is not None else None,
                                  len(table.change_versions)))

    def _log_change(self, table: Table, record_id: str, version: int) -> None:
        table.change_versions.append(version)
        table.change_ids.append(record_id)
        self.data_version += 1

    def insert(self, logical: str, values: Row, *, record_id: str | None = None,
               stamp: str | None = None) -> Row:
        table = self.tables[logical]
        pk = table.definition.pk
        record_id = (record_id or values.get(pk) or str(uuid.uuid4())).lower()
        self._journal_entry(table, record_id)
        now = stamp or self.now_text()
        row: Row = {k: v for k, v in values.items() if v is not None}  # sparse: absent is null
        if table.key_order is not None and record_id not in table.rows:
            table.key_order.append(record_id)
        row[pk] = record_id
        row["createdon"] = values.get("createdon") or now
        row["modifiedon"] = values.get("modifiedon") or now
        version = self.next_version()
        row["versionnumber"] = version
        table.rows[record_id] = row
        self._encode(table, record_id, row)
        self._log_change(table, record_id, version)
        return row

    def update(self, logical: str, record_id: str, values: Row, *,
               stamp: str | None = None) -> Row:
        table = self.tables[logical]
        row = table.rows.get(record_id)
        if row is None:
            raise RecordMissingError(record_id)
        self._journal_entry(table, record_id)
        row.update(values)
        row["modifiedon"] = stamp or self.now_text()
        version = self.next_version()
        row["versionnumber"] = version
        self._encode(table, record_id, row)
        self._log_change(table, record_id, version)
        return row

    def sync_wires(self, table: Table) -> None:
        """Bring the table's wire forms to its schema; when they start afresh, keep the
        preset lookup annotations (``lookup_presets``) current from the next write on."""
        wires = table.wires
        if wires.sync(table.definition, self.pokes) and self.lookup_presets is not None:
            for key, prop, annotate in self.lookup_presets(table):
                wires.lookup_memo(key, prop, annotate)

    def _encode(self, table: Table, record_id: str, row: Row) -> None:
        self.sync_wires(table)
        self._referenced_changed(record_id)  # first: a row may reference itself
        table.wires.written(record_id, row)

    def _referenced_changed(self, record_id: str) -> None:
        for each in self.tables.values():
            each.wires.referenced_changed(record_id)

    def delete(self, logical: str, record_id: str) -> None:
        table = self.tables[logical]
        if record_id not in table.rows:
            raise RecordMissingError(record_id)
        self._journal_entry(table, record_id)
        del table.rows[record_id]
        if table.key_order is not None:
            table.key_order.remove(record_id)
        table.wires.forget((record_id,))
        self._referenced_changed(record_id)
        self._log_change(table, record_id, self.next_version())

    def poke(self) -> None:
        """Something outside the row API changed (schema, raw edit): drop cached queries
        and the rendered rows (their version numbers did not move)."""
        self.data_version += 1
        self.pokes += 1

    # -- transactions --------------------------------------------------------------------
    def begin(self) -> None:
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal or [], None
        for table, record_id, old, log_length in reversed(journal):
            if old is None:
                table.rows.pop(record_id, None)
            else:
                table.rows[record_id] = old
            table.wires.forget((record_id,))  # encoded again when a page needs the row
            table.key_order = None
            del table.change_versions[log_length:]
            del table.change_ids[log_length:]
        for table in self.tables.values():  # restored rows: their lookups' labels too
            table.wires.forget_lookups()
        self.data_version += 1

    # -- reads -----------------------------------------------------------------------------
    def query(self, table: Table, filter_text: str, predicate: Predicate | None,
              order: OrderBy, order_text: str) -> _Query:
        """Matching rows sorted by ``order``; cached until the data changes."""
        cache_key = (table.definition.logical, filter_text, order_text, self.data_version)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        pk = table.definition.pk
        if predicate is None and len(order.columns) == 1 and order.columns[0][0].logical == pk \
                and not order.columns[0][1]:
            ids = table.keys_in_order()  # the change-tracking read: primary key order
        else:
            rows: Iterable[Row] = table.rows.values()
            if predicate is not None:
                rows = [r for r in rows if predicate(r)]
            ids = [r[pk] for r in sorted(rows, key=order.key)]
        result = _Query(ids)
        if len(self._cache) >= 8:
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    @staticmethod
    def resume_after(table: Table, query: _Query, order: OrderBy, last_key: tuple[Any, ...]
                     ) -> int:
        """Position after the paging cookie's row, found by the sort key of each row."""
        rows = table.rows
        return bisect.bisect_right(query.ids, last_key, key=lambda i: order.key(rows[i]))

    def changes_since(self, table: Table, version: int, upto: int
                      ) -> list[tuple[str, Row | None]]:
        """Rows changed (current state) or deleted (None) in (``version``, ``upto``],
        oldest change first, each row once."""
        start = bisect.bisect_right(table.change_versions, version)
        end = bisect.bisect_right(table.change_versions, upto)
        latest: dict[str, None] = {}
        for record_id in table.change_ids[start:end]:
            latest.pop(record_id, None)
            latest[record_id] = None
        return [(record_id, table.rows.get(record_id)) for record_id in latest]


def utc_now() -> datetime:
    return datetime.now(UTC)
