"""Webhook events: each key accepted once, retried while the receiver fails, never repeated."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.cycles import one_cycle
from state import Store
from tests.ops.support import ops_config, scenario_sandboxes, wiring_for

SECRET = "hook-secret-0123456789"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.posts: list[tuple[int, dict[str, Any], str | None]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    status = receiver.status
                    receiver.posts.append((status, body, self.headers.get("X-Hook-Token")))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/channelsync"

    def accepted(self) -> Counter[str]:
        with self.lock:
            return Counter(body["key"] for status, body, _t in self.posts if status == 200)

    def all_keys(self) -> Counter[str]:
        with self.lock:
            return Counter(body["key"] for _s, body, _t in self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.close()


def far_future(clock: Clock) -> datetime:
    return clock() + timedelta(days=30)


class Clock:
    """Real time plus an offset the test moves forward past the retry backoff."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.slow
def test_each_event_is_delivered_once_and_retried_while_the_webhook_fails(
    tmp_path: Path, receiver: Receiver
) -> None:
    secret_file = tmp_path / "hook-token"
    secret_file.write_text(SECRET)
    clock = Clock()
    with scenario_sandboxes(tmp_path, customers=80) as sandboxes:
        config = ops_config(
            sandboxes,
            tmp_path / "cfg",
            extra={
                "notifications": {
                    "webhook": {
                        "url": receiver.url,
                        "secret_header": {
                            "name": "X-Hook-Token",
                            "value": {"file": str(secret_file)},
                        },
                        "timeout": "5s",
                    }
                }
            },
        )
        wiring = wiring_for(config)
        try:
            # The receiver is down for three cycles: each round stops at the first failure
            # (one probe POST), and no event is retried before its backoff has passed.
            receiver.status = 500
            one_cycle(wiring, now=clock)
            events = {
                e.key: e.attempts
                for e in wiring.store().due_notifications(now=far_future(clock), limit=1000)
            }
            assert len(events) >= 2, "the scenario has registrations expiring and expired"
            probes = list(receiver.all_keys())
            assert len(probes) == 1
            clock.offset += timedelta(seconds=30)  # before the first retry is due
            one_cycle(wiring, now=clock)
            assert len(receiver.posts) == 2
            assert receiver.posts[1][1]["key"] != probes[0], "retried before its backoff ran out"
            clock.offset += timedelta(minutes=2)
            one_cycle(wiring, now=clock)
            assert len(receiver.posts) == 3
            assert not receiver.accepted()

            # Back up: every event arrives once; later cycles send nothing again.
            receiver.status = 200
            clock.offset += timedelta(hours=1)
            one_cycle(wiring, now=clock)
            accepted = receiver.accepted()
            assert set(accepted) == set(events)
            assert set(accepted.values()) == {1}
            total = len(receiver.posts)
            clock.offset += timedelta(hours=2)
            one_cycle(wiring, now=clock)
            one_cycle(wiring, now=clock)
            assert len(receiver.posts) == total, "delivered events were sent again"
        finally:
            wiring.close()

    kinds = Counter(body["event"] for _s, body, _t in receiver.posts)
    assert set(kinds) == {"registration_expiring", "registration_expired"}, kinds
    assert {token for *_rest, token in receiver.posts} == {SECRET}
    for _status, body, _token in receiver.posts:
        assert set(body) == {"event", "key", "data"}
        assert body["key"].startswith(f"{body['event']}:{body['data']['connection']}:")
        assert body["data"]["opportunity"] in body["key"]

    store = Store.from_url(wiring.settings.store.url)
    try:
        assert store.due_notifications(now=clock() + timedelta(days=1), limit=1000) == []
    finally:
        store.close()
