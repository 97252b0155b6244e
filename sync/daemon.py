"""``channelsync run``: the scheduled daemon.

APScheduler ticks every cycle interval with ``max_instances=1`` and coalescing, so runs
never overlap and missed ticks collapse into one. Only the leader (see
:mod:`sync.leader`) runs cycles. SIGTERM/SIGINT set a stop event that the cycle checks
between pages and batches: the current page or batch is committed, then the daemon exits.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from sync.leader import Leadership
from sync.metrics import Health

log = structlog.get_logger(__name__)


class Daemon:
    def __init__(
        self,
        *,
        cycle: Callable[[threading.Event], Any],
        interval: timedelta,
        leader: Leadership,
        health: Health,
        stop: threading.Event | None = None,
    ) -> None:
        self.cycle = cycle
        self.interval = interval
        self.leader = leader
        self.health = health
        self.stop = stop or threading.Event()
        self.cycles_run = 0
        self._running = threading.Lock()
        self.overlaps = 0

    def tick(self) -> None:
        if self.stop.is_set():
            return
        if not self._running.acquire(blocking=False):
            self.overlaps += 1  # APScheduler's max_instances makes this unreachable; counted
            log.error("cycle_overlap_refused")
            return
        try:
            if not self.leader.try_acquire():
                if self.health.active:
                    log.info("standby", reason="another daemon holds the lock")
                self.health.active = False
                return
            if not self.health.active:
                log.info("took_over")
            self.health.active = True
            self.cycle(self.stop)
            self.cycles_run += 1
            self.health.ready = True
        except Exception:
            log.exception("cycle_crashed")
        finally:
            self._running.release()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            log.info("stopping", signal=signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run_forever(self) -> int:
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=max(1.0, self.interval.total_seconds()),
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            id="cycle",
        )
        scheduler.start()
        log.info("daemon_started", interval_s=self.interval.total_seconds())
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            scheduler.shutdown(wait=True)  # lets the current cycle commit its page and stop
            self.leader.release()
            log.info("daemon_stopped", cycles=self.cycles_run)
        return 0
