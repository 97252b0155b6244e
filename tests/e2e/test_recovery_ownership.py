"""In-process reproduction of what the kill point ``push.written_not_booked#1`` found: a
write that reached the CRM but whose booking was lost must not change what the next cycle
decides. (Before ``sync.evaluate`` counted open outbox values as ours, the recovery read our
own ``Channel_Owner__c`` as set by hand, flipped flags and reasons for a cycle, routed an
old direct deal for good, and wrote the first values again afterwards.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cli.cycles import one_cycle, utcnow
from connectors.base import Entity, RecordUpdate
from sandbox.launch import SandboxSet
from sync.cycle import run_cycle
from sync.evaluate import evaluate_store
from tests.e2e.support import WriteTap, duplicated, wiring_for


def _queue_without_push(wiring: Any) -> None:
    runtimes = wiring.runtimes()

    def evaluate(store: Any, at: datetime, _run_id: int) -> tuple[list[Any], dict[str, Any]]:
        outcome = evaluate_store(
            store, runtimes, policy=wiring.policy(), match_settings=wiring.match_settings(),
            now=at, scorecards=wiring.scorecards(),
        )
        return outcome.planned, outcome.stats

    run_cycle(store=wiring.store(), runtimes=runtimes, evaluate=evaluate, now=utcnow,
              backoff=wiring.backoff(), push=False, trigger="test: queue only")


def _write_without_booking(wiring: Any, connection: str, entity: str) -> int:
    """What a crash right after ``connector.write`` leaves: the CRM has the values, the
    outbox still says pending and the ledger knows nothing."""
    store = wiring.store()
    rt = next(r for r in wiring.runtimes() if r.name == connection)
    items = [i for i in store.due_outbox(connection, now=utcnow(), limit=10_000)
             if i.entity == entity]
    per_record: dict[str, dict[str, Any]] = {}
    for item in items:
        per_record.setdefault(item.external_id, {})[item.field] = item.value
    updates = [RecordUpdate(id=k, fields=v, etag=None) for k, v in per_record.items()]
    results = rt.connector.write(Entity(entity), updates)
    assert all(r.ok for r in results)
    return len(items)


def test_lost_booking_of_owner_writes_changes_nothing(
    sandboxes: SandboxSet, e2e_config: Path
) -> None:
    tap = WriteTap().install(sandboxes)
    wiring = wiring_for(e2e_config)
    try:
        _queue_without_push(wiring)
        written = _write_without_booking(wiring, "sf-direct", "account")
        assert written > 0
        crashed = tap.mark()
        recovery = one_cycle(wiring, trigger="test: recovery")
        after_recovery = tap.mark()
        settled = one_cycle(wiring, trigger="test: settled")
    finally:
        wiring.close()
    assert recovery.ok and settled.ok
    assert tap.since(after_recovery) == [], "the cycle after the recovery still writes"
    assert duplicated(tap.since(0)) == []
    assert not [w for w in tap.since(crashed) if w.connection == "sf-direct"
                and w.obj == "Account" and w in set(tap.writes[:crashed])]
