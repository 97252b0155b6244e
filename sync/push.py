"""Push: drain a connection's outbox into its CRM, one result per record.

Items are grouped per record (one update carries all of a record's fields) and handed
to the connector, which batches as its vendor allows. Each result is booked on its
items: sent (and the ledger updated in the same transaction), failed with backoff, or
dead after ``max_attempts``. A value the CRM already shows is booked as sent without a
call, so a crash between a write and its booking never writes twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from connectors.base import Connector, Entity, RecordUpdate, WriteResult
from connectors.errors import ConnectorError
from sync.checkpoints import checkpoint
from sync.plan import same_value

log = structlog.get_logger(__name__)


class OutboxItem(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def entity(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def attempts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    max_attempts: int = 8
    initial: timedelta = timedelta(minutes=1)
    maximum: timedelta = timedelta(hours=6)

    def next_attempt(self, attempts: int, now: datetime) -> datetime:
        delay = min(self.initial * (2 ** max(0, attempts - 1)), self.maximum)
        return now + delay


@dataclass(slots=True)
class PushCounts:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    already_there: int = 0
    conflicts: int = 0
    calls_records: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dead": self.dead,
            "already_there": self.already_there,
            "conflicts": self.conflicts,
        }


CurrentLookup = Callable[[str, Sequence[str]], Mapping[str, tuple[str | None, Mapping[str, Any]]]]
"""(entity, external ids) -> external id -> (etag, fields as last read)."""


def push_connection(
    *,
    store: Any,
    connector: Connector,
    connection: str,
    current: CurrentLookup,
    now: datetime,
    backoff: Backoff,
    limit: int = 50_000,
) -> PushCounts:
    counts = PushCounts()
    items: Sequence[OutboxItem] = store.due_outbox(connection, now=now, limit=limit)
    by_entity: dict[str, dict[str, list[OutboxItem]]] = {}
    for item in items:
        by_entity.setdefault(item.entity, {}).setdefault(item.external_id, []).append(item)
    for entity, per_record in by_entity.items():
        seen = current(entity, list(per_record))
        updates: list[RecordUpdate] = []
        pending: list[list[OutboxItem]] = []
        for external_id, record_items in per_record.items():
            etag, fields_now = seen.get(external_id, (None, {}))
            live: list[OutboxItem] = []
            for item in record_items:
                if same_value(fields_now.get(item.field), item.value):
                    store.mark_sent([item.id], now=now, read_there=True)
                    checkpoint("push.already_there_booked")
                    counts.already_there += 1
                else:
                    live.append(item)
            if live:
                updates.append(
                    RecordUpdate(id=external_id, fields={i.field: i.value for i in live}, etag=etag)
                )
                pending.append(live)
        if not updates:
            continue
        checkpoint("push.before_write")
        try:
            results = connector.write(Entity(entity), updates)
        except ConnectorError as exc:
            message = f"{type(exc).__name__}: {exc}"
            counts.errors.append(message)
            for group in pending:
                for item in group:
                    _fail(store, item, message, now, backoff, counts)
            log.error("push_failed", entity=entity, error=message, records=len(updates))
            break
        counts.calls_records += len(updates)
        checkpoint("push.written_not_booked")
        _book(store, results, pending, now, backoff, counts)
        checkpoint("push.booked")
    log.info("pushed", **counts.as_dict())
    return counts


def _book(
    store: Any,
    results: Sequence[WriteResult],
    pending: Sequence[Sequence[OutboxItem]],
    now: datetime,
    backoff: Backoff,
    counts: PushCounts,
) -> None:
    if len(results) != len(pending):
        raise RuntimeError(f"connector returned {len(results)} results for {len(pending)} updates")
    sent_ids: list[int] = []
    for result, group in zip(results, pending, strict=True):
        if result.ok:
            sent_ids.extend(i.id for i in group)
            counts.sent += len(group)
            continue
        message = f"{result.code or 'error'}: {result.error or 'rejected'}"
        if result.conflict:
            counts.conflicts += 1
            for item in group:  # re-read and re-plan next cycle; not the write's fault
                store.mark_failed(item.id, error=message, now=now, next_attempt_at=now, dead=False)
            continue
        for item in group:
            _fail(store, item, message, now, backoff, counts)
    if sent_ids:
        store.mark_sent(sent_ids, now=now)


def _fail(
    store: Any, item: OutboxItem, message: str, now: datetime, backoff: Backoff, counts: PushCounts
) -> None:
    attempts = item.attempts + 1
    dead = attempts >= backoff.max_attempts
    store.mark_failed(
        item.id,
        error=message,
        now=now,
        next_attempt_at=None if dead else backoff.next_attempt(attempts, now),
        dead=dead,
    )
    if dead:
        counts.dead += 1
    else:
        counts.failed += 1
