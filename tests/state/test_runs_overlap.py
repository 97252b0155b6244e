"""Overlapping runs: when the earliest other run still pulling began (incremental
evaluation looks for touched rows from there, whatever the runs' ids)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from state import Store
from sync.incremental import touched_from


def test_overlap_is_the_earliest_other_open_run(store: Store) -> None:
    first = store.start_run(trigger="schedule")
    second = store.start_run(trigger="plan")
    third = store.start_run(trigger="manual")
    started = {r.id: r.started_at for r in store.recent_runs(limit=10)}
    assert store.overlap(first) == (first, started[second])  # a later run: same generation
    assert store.overlap(third) == (first - 1, started[first])  # an older one lowers it
    store.finish_run(first, status="ok", counts={}, error=None)
    assert store.overlap(second) == (second, started[third])
    store.finish_run(third, status="interrupted", counts={}, error=None)
    assert store.overlap(second) == (second, None)
    # a run left "running" longer ago than the window is not waited for
    assert store.overlap(first, window=timedelta(0)) == (first, None)


def test_touched_from_is_the_read_unless_another_run_was_pulling() -> None:
    read_at = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)
    other = read_at - timedelta(seconds=20)
    assert touched_from(read_at, None) == read_at.isoformat()
    assert touched_from(read_at, other) == other.isoformat()
    assert touched_from(read_at, read_at + timedelta(seconds=1)) == read_at.isoformat()
