"""Records as read: one-transaction page upserts with change detection, tombstones, snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from state.base import StoreBase, chunked, utcnow
from state.pagewrite import (
    page_payload,
    postgres_upsert,
    record_keys_where,
    record_table,
    sqlite_upsert,
)
from state.rows import AccountRow, OpportunityRow, PageResult, RecordKey, SkippedRow
from state.tables import Cursor, SkippedRecordRow, table
from state.types import dumps_json


class RecordsMixin(StoreBase):
    def apply_page(
        self,
        *,
        connection: str,
        entity: str,
        rows: Sequence[Mapping[str, Any]],
        deleted_ids: Sequence[str],
        skipped: Sequence[tuple[str | None, str, Any]],
        cursor: Mapping[str, Any],
        run_id: int,
        full_refresh: bool,
        complete: bool = False,
    ) -> PageResult:
        """Store one page and its cursor in a single transaction.

        ``rows`` hold ``external_id``, canonical fields (missing ones are stored as NULL),
        ``vendor_modified_at``, ``etag`` and ``raw``. A row whose canonical values equal the
        stored ones keeps its ``changed_generation``; changed and new rows get ``run_id``.
        A row with a value of the wrong type (or no external id) is not stored but kept as a
        skipped record with the reason, counted in ``PageResult.skipped``; an unknown field
        name raises ValueError (a mapping bug, not bad data).
        With ``full_refresh`` and ``complete`` (the last page of a from-scratch read) the
        records the read did not return are tombstoned in the same transaction.
        """
        tbl = record_table(entity)
        now = utcnow()
        external_ids, params, rejected = page_payload(
            self.dialect, connection, entity, rows, run_id, now
        )
        skipped = [*skipped, *rejected]
        with self._write() as conn:
            before = self._generations(conn, tbl, connection, external_ids)
            after: dict[str, int] = {}
            if external_ids and self.dialect == "postgresql":
                # Returns the rows it inserted or updated; the others were identical.
                after.update(
                    (ext_id, gen)
                    for ext_id, gen in conn.execute(postgres_upsert(entity, full_refresh), params)
                )
            elif external_ids:
                conn.exec_driver_sql(sqlite_upsert(entity, full_refresh)[0], params)
                after = self._generations(conn, tbl, connection, external_ids)
            inserted = sum(1 for ext_id in external_ids if ext_id not in before)
            updated = sum(
                1
                for ext_id, gen in before.items()
                if gen != run_id and after.get(ext_id) == run_id
            )
            deleted = _tombstone(conn, tbl, connection, deleted_ids, run_id, now)
            if skipped:
                conn.execute(
                    sa.insert(table(SkippedRecordRow)),
                    [
                        {
                            "run_id": run_id, "connection": connection, "entity": entity,
                            "external_id": ext_id, "reason": reason, "payload": payload,
                            "created_at": now,
                        }
                        for ext_id, reason, payload in skipped
                    ],
                )
            self._save_cursor(conn, connection, entity, cursor, run_id, full_refresh, now)
            if full_refresh and complete:
                deleted += _tombstone_unseen(conn, tbl, connection, entity, run_id, now)
        return PageResult(
            inserted=inserted,
            updated=updated,
            unchanged=len(external_ids) - inserted - updated,
            deleted=deleted,
            skipped=len(skipped),
        )

    def tombstone_unseen(self, *, connection: str, entity: str, run_id: int) -> int:
        """After a complete full refresh: mark records it did not return as deleted."""
        tbl = record_table(entity)
        with self._write() as conn:
            return _tombstone_unseen(conn, tbl, connection, entity, run_id, utcnow())

    def get_cursor(self, connection: str, entity: str) -> dict[str, Any] | None:
        with self._read() as conn:
            value = conn.execute(_CURSOR_QUERY, {"connection": connection,
                                                 "entity": entity}).scalar_one_or_none()
        return dict(value) if value is not None else None

    def cursors(self, connections: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """(connection, entity) -> stored cursor of ``connections``: one read for a cycle's
        pulls (a missing key: no cursor, the read starts from scratch)."""
        if not connections:
            return {}
        with self._read() as conn:
            return {(c, e): dict(v) for c, e, v in conn.execute(
                _CURSORS_QUERY, {"connections": list(connections)}) if v is not None}

    def reset_cursor(self, connection: str, entity: str) -> None:
        """Forget the read position: the next read starts from scratch (a full refresh)."""
        cur = table(Cursor)
        with self._write() as conn:
            conn.execute(
                sa.delete(cur).where(cur.c.connection == connection, cur.c.entity == entity)
            )

    def load_accounts(self, *, include_deleted: bool = False) -> list[AccountRow]:
        return self._load("account", AccountRow, include_deleted)

    def load_opportunities(self, *, include_deleted: bool = False) -> list[OpportunityRow]:
        return self._load("opportunity", OpportunityRow, include_deleted)

    def changed_since(self, generation: int) -> set[RecordKey]:
        """Keys of records (deleted too) whose canonical values changed after run ``generation``."""
        with self._read() as conn:
            return record_keys_where(conn, lambda tbl: tbl.c.changed_generation > generation)

    def raw_record(self, key: RecordKey) -> Any:
        """The vendor payload last read for a record (for debugging), or None."""
        tbl = record_table(key.entity)
        with self._read() as conn:
            return conn.execute(
                sa.select(tbl.c.raw).where(
                    tbl.c.connection == key.connection, tbl.c.external_id == key.external_id
                )
            ).scalar_one_or_none()

    def current_values(
        self, connection: str, entity: str, external_ids: Sequence[str]
    ) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """external id -> (etag, vendor fields as last read); unknown ids are left out."""
        found = self.current_values_of((connection, entity, x) for x in external_ids)
        return {x: value for (_, _, x), value in found.items()}

    def current_values_of(self, keys: Iterable[tuple[str, str, str]]
                          ) -> dict[tuple[str, str, str], tuple[str | None, dict[str, Any]]]:
        """:meth:`current_values` of (connection, entity, external id) ``keys`` of any
        connections, in one read (a statement per entity)."""
        by_entity: dict[str, set[tuple[str, str]]] = {}
        for connection, entity, ext_id in keys:
            by_entity.setdefault(entity, set()).add((connection, ext_id))
        found: dict[tuple[str, str, str], tuple[str | None, dict[str, Any]]] = {}
        if not by_entity:
            return found
        with self._read() as conn:
            for entity, wanted in sorted(by_entity.items()):
                for connection, ext_id, etag, raw in self._select_keys(
                        conn, record_table(entity), ("connection", "external_id", "etag", "raw"),
                        ("connection", "external_id"), sorted(wanted)):
                    found[(connection, entity, ext_id)] = (
                        etag, dict(raw) if isinstance(raw, Mapping) else {})
        return found

    def skipped_records(self, *, run_id: int | None = None, limit: int = 100) -> list[SkippedRow]:
        tbl = table(SkippedRecordRow)
        query = sa.select(*[tbl.c[f.name] for f in fields(SkippedRow)]).order_by(tbl.c.id.desc())
        if run_id is not None:
            query = query.where(tbl.c.run_id == run_id)
        with self._read() as conn:
            return [SkippedRow(*row) for row in conn.execute(query.limit(limit))]

    def _load(self, entity: str, row_type: type, include_deleted: bool) -> list[Any]:
        tbl = record_table(entity)
        query = sa.select(*[tbl.c[f.name] for f in fields(row_type)]).order_by(tbl.c.id)
        if not include_deleted:
            query = query.where(sa.not_(tbl.c.deleted))
        with self._read() as conn:
            return [row_type(*row) for row in conn.execute(query)]

    def _generations(
        self, conn: sa.Connection, tbl: sa.Table, connection: str, external_ids: list[str]
    ) -> dict[str, int]:
        """external id -> changed_generation for those of ``external_ids`` already stored."""
        if not external_ids:
            return {}
        ids: Any = external_ids if self.dialect == "postgresql" else dumps_json(external_ids)
        query = _generations_query(self.dialect, tbl.name)
        return {ext_id: gen for ext_id, gen in
                conn.execute(query, {"connection": connection, "ids": ids})}

    def _save_cursor(
        self,
        conn: sa.Connection,
        connection: str,
        entity: str,
        value: Mapping[str, Any],
        run_id: int,
        full_refresh: bool,
        now: datetime,
    ) -> None:
        conn.execute(_cursor_upsert(self.dialect, full_refresh), {
            "connection": connection, "entity": entity, "value": dict(value),
            "refresh_generation": run_id if full_refresh else None, "updated_at": now})


_CURSOR_QUERY = sa.select(table(Cursor).c.value).where(
    table(Cursor).c.connection == sa.bindparam("connection"),
    table(Cursor).c.entity == sa.bindparam("entity"))
_CURSORS_QUERY = sa.select(table(Cursor).c.connection, table(Cursor).c.entity,
                           table(Cursor).c.value).where(
    table(Cursor).c.connection.in_(sa.bindparam("connections", expanding=True)))


# Statements a page write runs, built once: building one makes proxies of every column
# of its table (an upsert's ``excluded``, a table-valued function), which took longer than
# running it on a page of a few records.
@cache
def _generations_query(dialect: str, entity: str) -> Any:
    """external id, changed_generation of the rows of one connection among a list of ids
    (``connection``; ``ids``: an array on PostgreSQL, a JSON list on SQLite: one bound
    parameter however long the page)."""
    tbl = record_table(entity)
    ids: sa.ColumnElement[bool]
    if dialect == "postgresql":
        ids = tbl.c.external_id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
    else:
        items = sa.func.json_each(sa.bindparam("ids", type_=sa.Text()))
        ids = tbl.c.external_id.in_(sa.select(items.table_valued("value").c.value))
    return sa.select(tbl.c.external_id, tbl.c.changed_generation).where(
        tbl.c.connection == sa.bindparam("connection"), ids)


@cache
def _cursor_upsert(dialect: str, full_refresh: bool) -> Any:
    cur = table(Cursor)
    statement = postgresql.insert(cur) if dialect == "postgresql" else sqlite.insert(cur)
    new = statement.excluded
    updates: dict[str, Any] = {"value": new.value, "updated_at": new.updated_at}
    if full_refresh:
        # A refresh resumed in a later run keeps the run it started in, so records seen
        # before the interruption are not tombstoned when it completes.
        updates["refresh_generation"] = sa.func.coalesce(cur.c.refresh_generation,
                                                         new.refresh_generation)
    return statement.on_conflict_do_update(index_elements=[cur.c.connection, cur.c.entity],
                                           set_=updates)

def _tombstone(
    conn: sa.Connection,
    tbl: sa.Table,
    connection: str,
    external_ids: Sequence[str],
    run_id: int,
    now: datetime,
) -> int:
    count = 0
    for chunk in chunked(list(dict.fromkeys(external_ids))):
        result = conn.execute(
            sa.update(tbl)
            .where(
                tbl.c.connection == connection,
                tbl.c.external_id.in_(chunk),
                sa.not_(tbl.c.deleted),
            )
            .values(deleted=True, deleted_at=now, changed_generation=run_id, updated_at=now)
        )
        count += result.rowcount
    return count


def _tombstone_unseen(
    conn: sa.Connection, tbl: sa.Table, connection: str, entity: str, run_id: int, now: datetime
) -> int:
    cur = table(Cursor)
    where_cursor = (cur.c.connection == connection, cur.c.entity == entity)
    started = conn.execute(sa.select(cur.c.refresh_generation).where(*where_cursor)).scalar()
    since = started if started is not None else run_id
    result = conn.execute(
        sa.update(tbl)
        .where(
            tbl.c.connection == connection,
            sa.not_(tbl.c.deleted),
            sa.or_(tbl.c.seen_generation.is_(None), tbl.c.seen_generation < since),
        )
        .values(deleted=True, deleted_at=now, changed_generation=run_id, updated_at=now)
    )
    conn.execute(sa.update(cur).where(*where_cursor).values(refresh_generation=None))
    return result.rowcount


def write_through(conn: sa.Connection, sent: Sequence[Sequence[Any]]) -> None:
    """Put values we just wrote to a CRM, ``(connection, entity, external id, field,
    value)``, into the stored copies of those records' vendor fields, in the caller's
    transaction: until the CRM's own copy is read again, the store shows what the CRM now
    holds, so a plan made before that read neither writes them again nor takes them
    for a person's edit. The record's change generation and update time are left alone:
    this is no change read from the CRM, and the read that brings the echo replaces
    these values as any read does."""
    wanted: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for connection, entity, external_id, field, value in sent:
        wanted.setdefault((connection, entity), {}).setdefault(external_id, {})[field] = value
    for (connection, entity), by_id in wanted.items():
        tbl = record_table(entity)
        update = sa.update(tbl).where(tbl.c.id == sa.bindparam("row_id")).values(
            raw=sa.bindparam("new_raw", type_=tbl.c.raw.type))
        for chunk in chunked(list(by_id)):
            query = sa.select(tbl.c.id, tbl.c.external_id, tbl.c.raw).where(
                tbl.c.connection == connection, tbl.c.external_id.in_(chunk),
                sa.not_(tbl.c.deleted))
            changes = []
            for row_id, external_id, raw in conn.execute(query):
                stored = dict(raw) if isinstance(raw, Mapping) else {}
                fields_now = {**stored, **by_id[external_id]}
                if fields_now != stored:
                    changes.append({"row_id": row_id, "new_raw": fields_now})
            if changes:
                conn.execute(update, changes)
