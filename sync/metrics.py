"""Prometheus metrics and the health endpoint the daemon serves (``/metrics``, ``/healthz``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """One registry per daemon (tests build their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.last_success = Gauge(
            "channelsync_last_success_timestamp_seconds",
            "Unix time of the last successful pull and push per connection",
            ["connection"],
            registry=r,
        )
        self.records_pulled = Counter(
            "channelsync_records_pulled_total",
            "Records pulled",
            ["connection", "entity"],
            registry=r,
        )
        self.records_skipped = Counter(
            "channelsync_records_skipped_total",
            "Records skipped as undecodable",
            ["connection", "entity"],
            registry=r,
        )
        self.writes_sent = Counter(
            "channelsync_writes_sent_total",
            "Field writes the CRM accepted",
            ["connection"],
            registry=r,
        )
        self.writes_failed = Counter(
            "channelsync_writes_failed_total",
            "Field writes the CRM refused",
            ["connection"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "channelsync_outbox_items",
            "Outbox items by state",
            ["connection", "state"],
            registry=r,
        )
        self.budget_used = Gauge(
            "channelsync_api_budget_used",
            "API budget used in the vendor's window",
            ["connection", "unit"],
            registry=r,
        )
        self.budget_limit = Gauge(
            "channelsync_api_budget_share_limit",
            "This connection's share of the vendor budget",
            ["connection", "unit"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            "channelsync_cycle_duration_seconds",
            "Duration of a full cycle",
            registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.connection_failures = Counter(
            "channelsync_connection_failures_total",
            "Cycles in which a connection failed",
            ["connection"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Ready once a cycle finished; stale when a connection has not succeeded for too long.

    Only the active daemon can go stale: a standby runs no cycles by design, and a daemon
    that has just taken over gets ``stale_after`` from the takeover to catch up.
    """

    def __init__(
        self,
        *,
        connections: Iterable[str],
        stale_after: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connections = list(connections)
        self.stale_after = stale_after
        self.clock = clock
        self.started = clock()
        self.active_since = self.started
        self.last_success: dict[str, datetime] = {}
        self.ready = False
        self._active = True  # False on an HA standby
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        with self._lock:
            if value and not self._active:
                self.active_since = self.clock()
            self._active = value

    def succeeded(self, connection: str, at: datetime) -> None:
        with self._lock:
            self.last_success[connection] = at

    def report(self, now: datetime | None = None) -> tuple[int, dict[str, Any]]:
        now = now or self.clock()
        with self._lock:
            since = self.active_since
            stale = [
                c
                for c in self.connections
                if self._active
                and now - max(self.last_success.get(c, since), since) > self.stale_after
            ]
            body = {
                "status": "stale" if stale else ("ready" if self.ready else "starting"),
                "role": "active" if self._active else "standby",
                "stale_connections": stale,
                "last_success": {c: t.isoformat() for c, t in self.last_success.items()},
            }
        code = 200 if body["status"] == "ready" or (not self._active and not stale) else 503
        return code, body


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_http(
    *, host: str, port: int, metrics: Metrics, health: Health
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` and ``/healthz`` in a daemon thread."""

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [metrics.render()]
        if path in ("/healthz", "/health"):
            code, body = health.report()
            start(
                f"{code} {'OK' if code == 200 else 'Service Unavailable'}",
                [("Content-Type", "application/json")],
            )
            return [orjson.dumps(body)]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    server = make_server(host, port, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="channelsync-http", daemon=True)
    thread.start()
    return server, thread
