"""A connection failing run after run: one webhook event per failure streak."""

from __future__ import annotations

from datetime import UTC, datetime

from state import Store
from sync.notify import connection_failure_events

FAR = datetime(2100, 1, 1, tzinfo=UTC)


def record_run(store: Store, statuses: dict[str, str]) -> int:
    run_id, parts = store.open_run(trigger="schedule", connections=list(statuses))
    for connection, status in statuses.items():
        part = parts[connection]
        error = "AuthError: token revoked" if status == "failed" else None
        store.finish_connection_run(part, status=status, counts={}, budget=None, error=error)
    store.finish_run(run_id, status="partial", counts={}, error=None)
    return run_id


def queue(store: Store) -> list[str]:
    """Queue this cycle's events as the daemon does; return the keys that were new."""
    events = connection_failure_events(store, after=3)
    before = {e.key for e in store.due_notifications(now=FAR, limit=1000)}
    store.add_notifications(events)
    after = {e.key for e in store.due_notifications(now=FAR, limit=1000)}
    return sorted(after - before)


def test_one_event_per_failure_streak(store: Store) -> None:
    record_run(store, {"crm": "ok", "other": "ok"})
    first_failure = record_run(store, {"crm": "failed", "other": "ok"})
    assert queue(store) == []
    record_run(store, {"crm": "stopped", "other": "stopped"})  # neither counts
    record_run(store, {"crm": "failed", "other": "ok"})
    assert queue(store) == []
    record_run(store, {"crm": "failed", "other": "ok"})
    assert queue(store) == [f"connection_failing:crm:{first_failure}"]
    (event,) = store.due_notifications(now=FAR, limit=10)
    assert event.kind == "connection_failing"
    assert event.payload["connection"] == "crm"
    assert event.payload["failed_runs"] == 3
    assert event.payload["error"] == "AuthError: token revoked"

    for _ in range(3):  # still failing: nothing new
        record_run(store, {"crm": "failed", "other": "ok"})
        assert queue(store) == []

    record_run(store, {"crm": "ok", "other": "ok"})  # recovered, then fails again
    again = [record_run(store, {"crm": "failed", "other": "ok"}) for _ in range(3)]
    assert queue(store) == [f"connection_failing:crm:{again[0]}"]


def test_a_streak_older_than_the_window_is_not_reported_again(store: Store) -> None:
    for _ in range(6):
        record_run(store, {"crm": "failed"})
    assert connection_failure_events(store, after=3, lookback=5) == []
    assert len(connection_failure_events(store, after=3, lookback=50)) == 1
