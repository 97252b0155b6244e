"""Overlapping ticks never overlap runs: a cycle longer than the interval holds off the next."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from sync.daemon import Daemon
from sync.leader import FileLeader
from sync.metrics import Health
from tests.ops.support import Concurrency, wait_for

SKIPPED = "maximum number of running instances reached"


class SlowCycle:
    """The first cycle runs until the test releases it; the second stops the daemon."""

    def __init__(self, *, stop_after_second: bool = False) -> None:
        self.concurrency = Concurrency()
        self.release = threading.Event()
        self.stop_after_second = stop_after_second

    def __call__(self, stop: threading.Event) -> None:
        with self.concurrency.enter():
            if self.concurrency.entered == 1:
                self.release.wait(timeout=120)
            elif self.stop_after_second:
                stop.set()  # as SIGTERM would: no tick after this one may start a cycle


def skipped_ticks(caplog: pytest.LogCaptureFixture) -> int:
    return sum(SKIPPED in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_ticks_during_a_long_cycle_are_skipped_not_overlapped_or_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="apscheduler")
    cycle = SlowCycle(stop_after_second=True)
    daemon = Daemon(
        cycle=cycle,
        interval=timedelta(seconds=1),
        leader=FileLeader(tmp_path / "daemon.lock"),
        health=Health(connections=["crm"], stale_after=timedelta(hours=1)),
    )
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run_forever()))
    runner.start()
    try:
        wait_for(lambda: cycle.concurrency.inside == 1, what="the first cycle to start")
        # Ticks keep coming while the first cycle runs; each is refused, none runs beside it.
        wait_for(lambda: skipped_ticks(caplog) >= 3, what="three ticks during the long cycle")
        assert cycle.concurrency.entered == 1
        skipped = skipped_ticks(caplog)
        cycle.release.set()
        # The missed ticks were dropped, not queued: the next tick brings one cycle.
        runner.join(timeout=60)
    finally:
        cycle.release.set()
        daemon.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert result == [0]
    assert cycle.concurrency.most == 1
    assert cycle.concurrency.entered == 2
    assert daemon.cycles_run == 2
    assert daemon.overlaps == 0
    assert skipped >= 3


def test_a_tick_while_a_cycle_runs_is_refused_by_the_daemon_itself(tmp_path: Path) -> None:
    """Belt and braces under APScheduler: two ticks at once never run two cycles."""
    cycle = SlowCycle()
    daemon = Daemon(
        cycle=cycle,
        interval=timedelta(seconds=1),
        leader=FileLeader(tmp_path / "daemon.lock"),
        health=Health(connections=["crm"], stale_after=timedelta(hours=1)),
    )
    first = threading.Thread(target=daemon.tick)
    first.start()
    try:
        wait_for(lambda: cycle.concurrency.inside == 1, what="the first cycle to start")
        daemon.tick()  # returns at once: refused
        assert daemon.overlaps == 1
        assert cycle.concurrency.entered == 1
    finally:
        cycle.release.set()
        first.join(timeout=60)
    daemon.tick()  # the lock is free again
    assert cycle.concurrency.most == 1
    assert daemon.cycles_run == 2


def test_a_second_daemon_on_the_same_sqlite_store_stays_standby(tmp_path: Path) -> None:
    ran: list[str] = []
    lock = tmp_path / "channelsync.db.lock"
    health_a = Health(connections=["crm"], stale_after=timedelta(hours=1))
    health_b = Health(connections=["crm"], stale_after=timedelta(hours=1))
    a = Daemon(cycle=lambda _s: ran.append("a"), interval=timedelta(seconds=1),
               leader=FileLeader(lock), health=health_a)
    b = Daemon(cycle=lambda _s: ran.append("b"), interval=timedelta(seconds=1),
               leader=FileLeader(lock), health=health_b)
    a.tick()
    b.tick()
    assert ran == ["a"]
    assert (health_a.active, health_b.active) == (True, False)
    a.leader.release()
    b.tick()
    assert ran == ["a", "b"]
    assert health_b.active
    b.leader.release()
