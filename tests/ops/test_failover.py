"""HA on PostgreSQL: two real daemons, one active; ``kill -9`` it and the other takes over."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests

from state import Store
from tests.ops.support import DaemonProcess, ops_config, scenario_sandboxes, spawn, wait_for

INTERVAL = timedelta(seconds=2)
# One interval for the standby's next tick plus room for a cycle on two busy cores.
TAKEOVER_DEADLINE = INTERVAL.total_seconds() + 40


def roles(daemons: list[DaemonProcess]) -> list[str] | None:
    found = []
    for daemon in daemons:
        try:
            _code, body = daemon.healthz()
        except requests.RequestException:
            return None
        found.append(body["role"])
    return found


def _ready(daemon: DaemonProcess) -> tuple[int, dict[str, Any]] | None:
    code, body = daemon.healthz()
    return (code, body) if body.get("status") == "ready" else None


def finished_runs(store: Store, *, after: datetime | None = None) -> list[Any]:
    return [
        r
        for r in store.recent_runs(limit=1000)
        if r.status == "ok" and (after is None or r.started_at >= after)
    ]


def assert_runs_never_overlap(store: Store) -> None:
    runs = sorted(
        (r for r in store.recent_runs(limit=1000) if r.finished_at is not None),
        key=lambda r: r.started_at,
    )
    for earlier, later in pairwise(runs):
        assert earlier.finished_at is not None
        assert earlier.finished_at <= later.started_at, (earlier, later)


def stop_in_a_cycle(daemon: DaemonProcess, store: Store, attempts: int = 20) -> None:
    """Freeze ``daemon`` (SIGSTOP) while a run of its is open in the store."""
    for _ in range(attempts):
        wait_for(
            lambda: any(r.status == "running" for r in store.recent_runs(limit=3)),
            what="the active daemon to be in a cycle",
        )
        daemon.signal(signal.SIGSTOP)
        if any(r.status == "running" for r in store.recent_runs(limit=3)):
            return
        daemon.signal(signal.SIGCONT)  # the cycle ended meanwhile: wait for the next
    pytest.fail(f"never caught the active daemon inside a cycle in {attempts} tries")


@pytest.mark.slow
@pytest.mark.postgres
def test_standby_takes_over_within_an_interval_after_kill_9(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    with scenario_sandboxes(tmp_path, customers=60) as sandboxes:
        config = ops_config(
            sandboxes,
            tmp_path / "cfg",
            store_url=empty_postgres_url,
            schedule={"cycle_interval": f"{int(INTERVAL.total_seconds())}s"},
        )
        # Both start at once on an empty database: migrations serialise, one daemon leads.
        daemons = [spawn(config, "run", directory=tmp_path, name=f"daemon-{n}") for n in "ab"]
        store = Store.from_url(empty_postgres_url)
        try:
            for daemon in daemons:
                daemon.health_port()
            wait_for(
                lambda: sorted(roles(daemons) or []) == ["active", "standby"]
                and finished_runs(store),
                what="one active daemon, one standby and a finished cycle",
            )
            seen = roles(daemons)
            assert seen is not None
            active = daemons[seen.index("active")]
            standby = daemons[seen.index("standby")]
            assert standby.healthz()[0] == 200, "a healthy standby must not fail its health check"
            assert_runs_never_overlap(store)

            # Kill it in the middle of a cycle (frozen there first: a quick cycle could
            # otherwise end between seeing it run and the kill).
            stop_in_a_cycle(active, store)
            killed_at = datetime.now(UTC)
            active.signal(signal.SIGKILL)
            assert active.wait() == -signal.SIGKILL

            took_over = wait_for(
                lambda: finished_runs(store, after=killed_at),
                what="the standby to complete a cycle",
                deadline=TAKEOVER_DEADLINE,
            )
            assert standby.process.poll() is None
            # the run row commits a moment before the daemon marks itself ready
            code, body = wait_for(lambda: _ready(standby), what="the new leader to be ready",
                                  deadline=10)
            assert (code, body["role"], body["status"]) == (200, "active", "ready"), body
            first = min(took_over, key=lambda r: r.started_at)
            print(f"takeover: first cycle started {first.started_at - killed_at} after kill -9")
            assert_runs_never_overlap(store)
            # A run the killed daemon left open is closed as interrupted, not left "running".
            cut_off = [r for r in store.recent_runs(limit=1000) if r.started_at < killed_at]
            assert all(r.finished_at is not None for r in cut_off), cut_off
            assert {r.status for r in cut_off} == {"ok", "interrupted"}, cut_off
        finally:
            for daemon in daemons:
                daemon.stop()
            store.close()
