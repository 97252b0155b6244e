"""``/healthz`` (ready, stale, standby) and the ``/metrics`` series after real cycles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cli.cycles import one_cycle
from sync.metrics import Health, Metrics, serve_http
from tests.ops.support import ops_config, scenario_sandboxes, seeded_counts, wiring_for

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)]."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def by_label(rows: list[tuple[dict[str, str], float]], *names: str) -> dict[Any, float]:
    return {
        (labels[names[0]] if len(names) == 1 else tuple(labels[n] for n in names)): value
        for labels, value in rows
    }


def test_health_is_starting_then_ready_then_stale_per_connection() -> None:
    clock = Clock(T0)
    health = Health(connections=["a", "b"], stale_after=timedelta(minutes=30), clock=clock)
    code, body = health.report()
    assert (code, body["status"]) == (503, "starting")

    health.succeeded("a", T0)
    health.succeeded("b", T0)
    health.ready = True
    clock.now = T0 + timedelta(minutes=20)
    health.succeeded("b", clock.now)
    assert health.report()[0] == 200

    clock.now = T0 + timedelta(minutes=31)
    code, body = health.report()
    assert (code, body["status"], body["stale_connections"]) == (503, "stale", ["a"])


def test_a_standby_never_goes_stale_and_a_takeover_gets_time_to_catch_up() -> None:
    clock = Clock(T0)
    health = Health(connections=["a"], stale_after=timedelta(minutes=30), clock=clock)
    health.active = False
    clock.now = T0 + timedelta(days=3)
    code, body = health.report()
    assert (code, body["role"], body["stale_connections"]) == (200, "standby", [])

    health.active = True  # took over: the first cycle is under way
    clock.now += timedelta(minutes=10)
    assert health.report()[1]["stale_connections"] == []
    clock.now += timedelta(minutes=21)
    code, body = health.report()
    assert (code, body["status"], body["stale_connections"]) == (503, "stale", ["a"])


@pytest.fixture
def http_health(tmp_path: Path) -> Iterator[tuple[Metrics, Health, Clock, str]]:
    clock = Clock(datetime.now(UTC))
    metrics = Metrics()
    health = Health(connections=[], stale_after=timedelta(minutes=30), clock=clock)
    server, thread = serve_http(host="127.0.0.1", port=0, metrics=metrics, health=health)
    try:
        yield metrics, health, clock, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_metrics_after_a_cycle_and_healthz_stale_for_a_failing_connection(
    tmp_path: Path, http_health: tuple[Metrics, Health, Clock, str]
) -> None:
    metrics, health, clock, base = http_health
    with scenario_sandboxes(tmp_path, customers=60) as sandboxes:
        wiring = wiring_for(ops_config(sandboxes, tmp_path / "cfg"))
        try:
            names = [rt.name for rt in wiring.runtimes()]
            health.connections = names
            first = one_cycle(wiring, now=clock, metrics=metrics, health=health)
            assert first.ok
            health.ready = True  # the daemon sets this after each cycle
            response = requests.get(f"{base}/healthz", timeout=5)
            assert response.status_code == 200
            assert orjson.loads(response.content)["status"] == "ready"

            text = requests.get(f"{base}/metrics", timeout=5).text
            found = samples(text)
            assert set(by_label(found["channelsync_last_success_timestamp_seconds"],
                                "connection")) == set(names)
            pulled = by_label(found["channelsync_records_pulled_total"], "connection", "entity")
            assert pulled == {k: float(v) for k, v in seeded_counts(sandboxes).items()}
            sent = by_label(found["channelsync_writes_sent_total"], "connection")
            assert set(sent) == set(names) and all(v > 0 for v in sent.values())
            failed = by_label(found["channelsync_writes_failed_total"], "connection")
            assert failed == dict.fromkeys(names, 0.0)
            outbox = by_label(found["channelsync_outbox_items"], "connection", "state")
            assert {c for c, _s in outbox} == set(names)
            assert sum(v for (_c, s), v in outbox.items() if s == "sent") == sum(sent.values())
            budget = by_label(found["channelsync_api_budget_used"], "connection")
            assert set(budget) == set(names) and all(v > 0 for v in budget.values())
            assert found["channelsync_cycle_duration_seconds_count"][0][1] == 1.0

            # pd-alpine goes down; the others keep succeeding.
            sandboxes["pd-alpine"].app.faults.error_rate = 1.0
            clock.now += timedelta(minutes=20)
            second = one_cycle(wiring, now=clock, metrics=metrics, health=health)
            assert second.connections["pd-alpine"].status == "failed"
            assert {n for n, c in second.connections.items() if c.status == "ok"} == set(
                names
            ) - {"pd-alpine"}
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200

            clock.now += timedelta(minutes=15)  # pd-alpine: 35 minutes without success
            response = requests.get(f"{base}/healthz", timeout=5)
            body = orjson.loads(response.content)
            assert (response.status_code, body["status"]) == (503, "stale")
            assert body["stale_connections"] == ["pd-alpine"]

            found = samples(requests.get(f"{base}/metrics", timeout=5).text)
            failures = by_label(found["channelsync_connection_failures_total"], "connection")
            assert failures == {"pd-alpine": 1.0}
            last = by_label(found["channelsync_last_success_timestamp_seconds"], "connection")
            assert last["pd-alpine"] < last["sf-direct"]
            assert found["channelsync_cycle_duration_seconds_count"][0][1] == 2.0
        finally:
            wiring.close()
