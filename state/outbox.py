"""Outbox of pending writes, the ledger of values written, notifications and leases."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from state.base import StoreBase, chunked, utcnow, with_default
from state.records import write_through
from state.rows import NotificationRow, OutboxItemIn, OutboxRow
from state.tables import OPEN_OUTBOX_STATES, Lease, LedgerEntry, Notification, OutboxItem, table
from state.types import dumps_json

FieldKey = tuple[str, str, str, str]
"""(connection, entity, external_id, field)"""


Written = dict[tuple[str, str, str], Any]  # (entity, external id, field) -> value
# an open item (the condition of the partial unique index that keeps one per record field)
_OPEN = table(OutboxItem).c.state.in_(OPEN_OUTBOX_STATES)


class NotificationLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> Any: ...


def _outbox_query() -> sa.Select[Any]:
    tbl = table(OutboxItem)
    return sa.select(*[tbl.c[f.name] for f in fields(OutboxRow)])


class OutboxMixin(StoreBase):
    def enqueue(self, items: Sequence[OutboxItemIn]) -> int:
        """Queue writes; returns how many were queued or replaced.

        An open (pending/failed) item for the same field with the same value is kept as it
        is (its attempts and backoff stand); with a different value it is replaced by a new
        item, so a push already holding the old item cannot mark the new value as sent.
        A value equal to a dead letter's for that field is not queued again until
        `retry_dead` (it would only fail the same way).
        """
        tbl = table(OutboxItem)
        wanted: dict[FieldKey, OutboxItemIn] = {
            (i.connection, i.entity, i.external_id, i.field): i for i in items
        }
        if not wanted:
            return 0
        connections = sorted({key[0] for key in wanted})
        now = utcnow()
        key_cols = (tbl.c.connection, tbl.c.entity, tbl.c.external_id, tbl.c.field)
        with self._write() as conn:
            existing = conn.execute(
                sa.select(tbl.c.id, tbl.c.state, tbl.c.value, *key_cols).where(
                    tbl.c.connection.in_(connections),
                    tbl.c.state.in_((*OPEN_OUTBOX_STATES, "dead")),
                )
            ).all()
            open_items: dict[FieldKey, tuple[int, str]] = {}
            dead: set[tuple[FieldKey, str]] = set()
            for item_id, state, value, *key_columns in existing:
                key: FieldKey = (key_columns[0], key_columns[1], key_columns[2], key_columns[3])
                if state == "dead":
                    dead.add((key, dumps_json(value)))
                else:
                    open_items[key] = (item_id, dumps_json(value))
            replaced: list[int] = []
            inserts: list[dict[str, Any]] = []
            for wanted_key, item in wanted.items():
                value_text = dumps_json(item.value)
                current = open_items.get(wanted_key)
                if current is not None and current[1] == value_text:
                    continue
                if current is None and (wanted_key, value_text) in dead:
                    continue
                if current is not None:
                    replaced.append(current[0])
                inserts.append({
                    "connection": item.connection, "entity": item.entity,
                    "external_id": item.external_id, "field": item.field, "value": item.value,
                    "previous": item.previous, "rule": item.rule, "reason": item.reason,
                    "state": "pending", "attempts": 0, "next_attempt_at": None,
                    "created_at": now, "updated_at": now,
                })
            for chunk in chunked(replaced):
                conn.execute(sa.delete(tbl).where(tbl.c.id.in_(chunk)))
            if inserts:
                conn.execute(sa.insert(tbl), inserts)
        return len(inserts)

    def due_outbox(self, connection: str, *, now: datetime, limit: int) -> list[OutboxRow]:
        """Pending and failed items of a connection whose next attempt is due, oldest first."""
        tbl = table(OutboxItem)
        query = (
            _outbox_query()
            .where(
                tbl.c.connection == connection,
                tbl.c.state.in_(OPEN_OUTBOX_STATES),
                sa.or_(tbl.c.next_attempt_at.is_(None), tbl.c.next_attempt_at <= now),
            )
            .order_by(tbl.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [OutboxRow(*row) for row in conn.execute(query)]

    def with_open_items(self, connections: Sequence[str]) -> set[str]:
        """Those of ``connections`` with an open (pending or failed) item, due or not: one
        read, an index probe per connection, instead of one drain query each."""
        if not connections:
            return set()
        tbl = table(OutboxItem)
        names = list(dict.fromkeys(connections))
        query = sa.select(*[
            sa.exists().where(tbl.c.connection == name, tbl.c.state.in_(OPEN_OUTBOX_STATES))
            for name in names
        ])
        with self._read() as conn:
            found = conn.execute(query).one()
        return {name for name, has in zip(names, found, strict=True) if has}

    def mark_sent(self, item_ids: Sequence[int], *, now: datetime, read_there: bool = False
                  ) -> int:
        """Mark open items sent and record their values in the ledger and in the stored
        copies of their records (:func:`state.records.write_through`), in one transaction.
        ``read_there``: the stored copies already show these values, as the CRM spells
        them (a write booked late): they are left as read."""
        tbl, ledger = table(OutboxItem), table(LedgerEntry)
        statement = self._upsert(ledger, ("connection", "entity", "external_id", "field"),
                                 ("value", "written_at"))
        count = 0
        with self._write() as conn:
            for chunk in chunked(list(dict.fromkeys(item_ids))):
                sent = conn.execute(
                    sa.update(tbl)
                    .where(tbl.c.id.in_(chunk), tbl.c.state.in_(OPEN_OUTBOX_STATES))
                    .values(state="sent", attempts=tbl.c.attempts + 1, next_attempt_at=None,
                            last_error=None, updated_at=now)
                    .returning(tbl.c.connection, tbl.c.entity, tbl.c.external_id, tbl.c.field,
                               tbl.c.value)
                ).all()
                if sent:
                    conn.execute(statement, [
                        {"connection": c, "entity": e, "external_id": x, "field": f,
                         "value": v, "written_at": now}
                        for c, e, x, f, v in sent
                    ])
                    if not read_there:
                        write_through(conn, sent)
                count += len(sent)
        return count

    def mark_failed(
        self, item_id: int, *, error: str, now: datetime,
        next_attempt_at: datetime | None, dead: bool,
    ) -> None:
        """Record a failed attempt: retry at ``next_attempt_at``, or give up when ``dead``."""
        tbl = table(OutboxItem)
        with self._write() as conn:
            result = conn.execute(
                sa.update(tbl)
                .where(tbl.c.id == item_id)
                .values(state="dead" if dead else "failed", attempts=tbl.c.attempts + 1,
                        last_error=error, next_attempt_at=None if dead else next_attempt_at,
                        updated_at=now)
            )
            if result.rowcount != 1:
                raise LookupError(f"outbox item {item_id} does not exist")

    def retry_dead(self, item_ids: Sequence[int], *, now: datetime) -> int:
        """Put dead letters back in the queue (an operator fixed the cause)."""
        tbl = table(OutboxItem)
        count = 0
        with self._write() as conn:
            for item_id in item_ids:
                newer_open = (
                    sa.select(sa.literal(1)).select_from(tbl.alias("other")).where(
                        sa.text("other.connection = outbox.connection"),
                        sa.text("other.entity = outbox.entity"),
                        sa.text("other.external_id = outbox.external_id"),
                        sa.text("other.field = outbox.field"),
                        sa.text("other.state IN ('pending', 'failed')"),
                    ).exists()
                )
                count += conn.execute(
                    sa.update(tbl)
                    .where(tbl.c.id == item_id, tbl.c.state == "dead", ~newer_open)
                    .values(state="pending", attempts=0, next_attempt_at=None, updated_at=now)
                ).rowcount
        return count

    def ledger(self, connection: str) -> dict[tuple[str, str, str], Any]:
        """(entity, external_id, field) -> value last written to ``connection``."""
        tbl = table(LedgerEntry)
        query = sa.select(tbl.c.entity, tbl.c.external_id, tbl.c.field, tbl.c.value).where(
            tbl.c.connection == connection
        )
        with self._read() as conn:
            return {(e, x, f): v for e, x, f, v in conn.execute(query)}

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """connection -> state -> number of items."""
        tbl = table(OutboxItem)
        query = sa.select(tbl.c.connection, tbl.c.state, sa.func.count()).group_by(
            tbl.c.connection, tbl.c.state
        )
        counts: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for connection, state, n in conn.execute(query):
                counts.setdefault(connection, {})[state] = n
        return counts

    def outbox_items(
        self, *, connection: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[OutboxRow]:
        tbl = table(OutboxItem)
        query = _outbox_query().order_by(tbl.c.id).limit(limit)
        if connection is not None:
            query = query.where(tbl.c.connection == connection)
        if state is not None:
            query = query.where(tbl.c.state == state)
        with self._read() as conn:
            return [OutboxRow(*row) for row in conn.execute(query)]

    def open_values(self, connections: Sequence[str]) -> dict[str, dict[tuple[str, str, str], Any]]:
        """connection -> (entity, external id, field) -> value of its open (pending or
        failed) item: only the columns the engine's "is this value ours" check needs."""
        tbl = table(OutboxItem)
        query = sa.select(tbl.c.connection, tbl.c.entity, tbl.c.external_id, tbl.c.field,
                          tbl.c.value).where(tbl.c.state.in_(OPEN_OUTBOX_STATES),
                                             tbl.c.connection.in_(list(connections)))
        out: dict[str, dict[tuple[str, str, str], Any]] = {}
        with self._read() as conn:
            for connection, entity, external_id, field, value in conn.execute(query):
                out.setdefault(connection, {})[(entity, external_id, field)] = value
        return out

    def written_values(self, keys: Mapping[str, Iterable[tuple[str, str]]]
                       ) -> tuple[dict[str, Written], dict[str, Written]]:
        """What we wrote to the records of ``keys`` (connection -> (entity, external id)
        keys): (the ledger, the values of open outbox items), each connection of ``keys``
        with an entry; two reads whatever the connections and entities."""
        ledgers = self._fields_by_connection(table(LedgerEntry), keys)
        queued = self._fields_by_connection(table(OutboxItem), keys, _OPEN)
        return ({name: ledgers.get(name, {}) for name in keys},
                {name: queued.get(name, {}) for name in keys})

    def has_written(self) -> bool:
        """Whether anything was ever written or queued (a new store: no "is this value
        ours" lookups to make)."""
        with self._read() as conn:
            return any(conn.execute(sa.select(sa.literal(1)).select_from(table(t)).limit(1))
                       .first() is not None for t in (LedgerEntry, OutboxItem))

    def dead_letters(self, connection: str | None = None) -> list[OutboxRow]:
        return self.outbox_items(connection=connection, state="dead", limit=100_000)

    # -- notifications ------------------------------------------------------------------
    def add_notifications(self, events: Sequence[NotificationLike]) -> int:
        """Queue events; a key already present (delivered or not) is ignored."""
        if not events:
            return 0
        tbl = table(Notification)
        now = utcnow()
        params = {e.key: {"key": e.key, "kind": e.kind, "payload": e.payload, "state": "pending",
                          "attempts": 0, "created_at": now} for e in events}
        statement = self._insert(tbl).on_conflict_do_nothing(index_elements=[tbl.c.key])
        with self._write() as conn:
            return len(conn.execute(statement.returning(tbl.c.id), list(params.values())).all())

    def due_notifications(self, *, now: datetime, limit: int) -> list[NotificationRow]:
        tbl = table(Notification)
        query = (
            sa.select(*[tbl.c[f.name] for f in fields(NotificationRow)])
            .where(
                tbl.c.state.in_(("pending", "failed")),
                sa.or_(tbl.c.next_attempt_at.is_(None), tbl.c.next_attempt_at <= now),
            )
            .order_by(tbl.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [NotificationRow(*with_default(r, 3, {})) for r in conn.execute(query)]

    def mark_notification(
        self, notification_id: int, *, delivered: bool, error: str | None = None,
        next_attempt_at: datetime | None = None, now: datetime | None = None,
    ) -> None:
        """Delivered, or failed: retried at ``next_attempt_at``, dead when that is None."""
        tbl = table(Notification)
        when = now or utcnow()
        if delivered:
            values: dict[str, Any] = {"state": "delivered", "delivered_at": when,
                                      "next_attempt_at": None, "last_error": None}
        else:
            values = {"state": "failed" if next_attempt_at else "dead",
                      "next_attempt_at": next_attempt_at, "last_error": error}
        with self._write() as conn:
            result = conn.execute(
                sa.update(tbl).where(tbl.c.id == notification_id)
                .values(attempts=tbl.c.attempts + 1, **values)
            )
            if result.rowcount != 1:
                raise LookupError(f"notification {notification_id} does not exist")

    # -- leases -------------------------------------------------------------------------
    def try_acquire_lease(
        self, name: str, holder: str, *, now: datetime, ttl: timedelta
    ) -> bool:
        """Take or renew lease ``name`` for ``holder`` unless another holder's is unexpired."""
        tbl = table(Lease)
        statement = self._insert(tbl).values(name=name, holder=holder, expires_at=now + ttl)
        statement = statement.on_conflict_do_update(
            index_elements=[tbl.c.name],
            set_={"holder": statement.excluded.holder,
                  "expires_at": statement.excluded.expires_at},
            where=sa.or_(tbl.c.holder == statement.excluded.holder, tbl.c.expires_at <= now),
        ).returning(tbl.c.name)
        with self._write() as conn:
            return conn.execute(statement).first() is not None

    def release_lease(self, name: str, holder: str) -> None:
        tbl = table(Lease)
        with self._write() as conn:
            conn.execute(sa.delete(tbl).where(tbl.c.name == name, tbl.c.holder == holder))

    def lease_holder(self, name: str, *, now: datetime) -> str | None:
        tbl = table(Lease)
        with self._read() as conn:
            return conn.execute(
                sa.select(tbl.c.holder).where(tbl.c.name == name, tbl.c.expires_at > now)
            ).scalar_one_or_none()
