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
    """Ready once a cycle finished; stale when a connection has not succeeded for too long."""

    def __init__(self, *, connections: Iterable[str], stale_after: timedelta) -> None:
        self.connections = list(connections)
        self.stale_after = stale_after
        self.started = datetime.now(UTC)
        self.last_success: dict[str, datetime] = {}
        self.ready = False
        self.active = True  # False on an HA standby
        self._lock = threading.Lock()

    def succeeded(self, connection: str, at: datetime) -> None:
        with self._lock:
            self.last_success[connection] = at

    def report(self, now: datetime | None = None) -> tuple[int, dict[str, Any]]:
        now = now or datetime.now(UTC)
        with self._lock:
            stale = [
                c
                for c in self.connections
                if now - self.last_success.get(c, self.started) > self.stale_after
            ]
            body = {
                "status": "stale" if stale else ("ready" if self.ready else "starting"),
                "role": "active" if self.active else "standby",
                "stale_connections": stale,
                "last_success": {c: t.isoformat() for c, t in self.last_success.items()},
            }
        code = 200 if body["status"] == "ready" or (not self.active and not stale) else 503
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
