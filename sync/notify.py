"""Webhook notifications: each event once, retried while the webhook is down.

Events are rows with a unique key (for example ``registration_expiring:<record>:<expiry>``),
so re-detecting the same fact every cycle adds nothing; delivery marks the row, and a
failed POST is retried with backoff on later cycles. While the receiver is down (no
answer, 5xx, 429) a round stops at the first failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

import requests
import structlog

from state.rows import NotificationIn

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    headers: Mapping[str, str]
    timeout: float = 10.0


def deliver_due(
    *,
    store: Any,
    webhook: Webhook | None,
    session: requests.Session,
    now: datetime,
    limit: int = 500,
    retry_initial: timedelta = timedelta(minutes=1),
    retry_max: timedelta = timedelta(hours=1),
) -> tuple[int, int]:
    """POST every due event; returns (delivered, failed)."""
    if webhook is None:
        return 0, 0
    delivered = failed = 0
    for event in store.due_notifications(now=now, limit=limit):
        body = {"event": event.kind, "key": event.key, "data": event.payload}
        try:
            response = session.post(
                webhook.url, json=body, headers=dict(webhook.headers), timeout=webhook.timeout
            )
            ok = 200 <= response.status_code < 300
            error = None if ok else f"HTTP {response.status_code}"
            down = response.status_code >= 500 or response.status_code == 429
        except requests.RequestException as exc:
            ok, error, down = False, type(exc).__name__, True
        if ok:
            store.mark_notification(event.id, delivered=True)
            delivered += 1
            continue
        delay = min(retry_initial * (2 ** min(event.attempts, 16)), retry_max)
        store.mark_notification(event.id, delivered=False, error=error, next_attempt_at=now + delay)
        failed += 1
        log.warning("webhook_failed", kind=event.kind, key=event.key, error=error)
        if down:
            # The receiver is down: the other due events wait for the next cycle instead
            # of each waiting out the timeout now and holding up the daemon.
            break
    if delivered or failed:
        log.info("webhook_delivered", delivered=delivered, failed=failed)
    return delivered, failed


FAILING_AFTER = 3


def connection_failure_events(
    store: Any, *, after: int = FAILING_AFTER, lookback: int = 50
) -> list[NotificationIn]:
    """An event for each connection whose last ``after`` or more runs all failed.

    The key names the run that began the failure streak, so queueing the same streak
    again every cycle adds nothing (keys are unique): a connection down for days sends
    one event, and one that fails again after a success sends a new one. Runs in which
    the connection was neither ok nor failed (stopped, interrupted) do not count.
    """
    recent = store.recent_runs(limit=lookback)
    truncated = len(recent) == lookback
    history: dict[str, list[Any]] = {}  # connection -> its counted runs, newest first
    for run in recent:
        for part in store.connection_runs(run.id):
            if part.status in ("ok", "failed"):
                history.setdefault(part.connection, []).append(part)
    events = []
    for connection, runs in history.items():
        streak = list(takewhile(lambda r: r.status == "failed", runs))
        if len(streak) < after or (truncated and len(streak) == len(runs)):
            continue  # not failing long enough, or began before the window (reported then)
        first, last = streak[-1], streak[0]
        events.append(
            NotificationIn(
                key=f"connection_failing:{connection}:{first.run_id}",
                kind="connection_failing",
                payload={
                    "connection": connection,
                    "failed_runs": len(streak),
                    "since": first.started_at.isoformat(),
                    "error": last.error,
                },
            )
        )
    return events
