"""Contract-suite harness for Pipedrive: an HTTPS sandbox company and connectors pointed at it.

The sandbox's clock runs ahead of the wall clock by one second per record the harness
creates, so that "each record gets a distinct, later timestamp" holds at Pipedrive's
one-second resolution without stamping anything in the future.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from connectors.base import Entity
from connectors.http import Pacer, QuotaGovernor, RetryPolicy, make_session
from connectors.pipedrive import PipedriveConnector
from sandbox.core import Rejection
from sandbox.pipedrive import PipedriveSandbox
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import ensure_tls

OBJECT = {Entity.ACCOUNT: "organizations", Entity.OPPORTUNITY: "deals"}
WRITABLE = "Channel conflict reason"
READ_FIELDS = {
    Entity.ACCOUNT: ("name", "website", "address.country", "DUNS number", "VAT ID",
                     "Channel owner", "owner_id", "Partner ID", "add_time", "update_time",
                     "Channel conflict", WRITABLE),
    Entity.OPPORTUNITY: ("title", "org_id", "value", "currency", "stage_id", "status",
                         "expected_close_date", "add_time", "update_time",
                         "Last partner activity", "owner_id", "Channel owner", "Registered by",
                         "Registration date", "Registration expires", "Registration status",
                         "Registration decision", "Reassign to", "Channel conflict", WRITABLE),
}
_TLS_DIR = Path(tempfile.gettempdir()) / "channelsync-sandbox-tls"
_tls_lock = threading.Lock()


def no_sleep(_seconds: float) -> None:
    return None


class PipedriveHarness:
    vendor = "pipedrive"

    def __init__(self, **sandbox_options: Any) -> None:
        self._offset = 0.0
        self._counter = 0
        options = {"burst_limit": 100_000, "daily_tokens": 10_000_000, **sandbox_options}
        self.app = PipedriveSandbox(clock=self.now, **options)
        self.app.load_fixture({"users": [{"name": "Harness Admin", "email": "admin@pd.example"}]})
        with _tls_lock:
            self.tls = ensure_tls(_TLS_DIR)
        self.running: RunningSandbox = serve(self.app, tls=self.tls)

    def now(self) -> float:
        return time.time() + self._offset

    def _next_stamp(self) -> int:
        self._offset += 1
        return int(self.now())

    def connector(
        self, *, page_size: int | None = None, session: requests.Session | None = None,
        retry: RetryPolicy | None = None, pacer: Pacer | None = None,
        quota: QuotaGovernor | None = None, timeout_s: float | None = None, **options: Any,
    ) -> PipedriveConnector:
        if timeout_s is not None:
            options["timeout"] = timeout_s
        if session is not None:  # a test's own session (recording, say): pin the CA
            session.trust_env = False
            session.verify = str(self.tls.ca_file)
        return PipedriveConnector(
            session=session or make_session(ca_bundle=str(self.tls.ca_file)),
            base_url=self.running.base_url,
            api_token=self.app.api_token,
            retry=retry or RetryPolicy(sleep=no_sleep),
            quota=quota or QuotaGovernor(unit="tokens", window="day", limit=None),
            pacer=pacer or Pacer(sleep=no_sleep),
            page_size=page_size or 500,
            connection="pipedrive-harness",
            **options,
        )

    def fields(self, entity: Entity) -> Sequence[str]:
        return READ_FIELDS[entity]

    def writable_field(self, entity: Entity) -> str:
        return WRITABLE

    def min_page_size(self) -> int:
        return 5  # Pipedrive honours any limit from 1 to 500; 5 keeps the suite quick

    def create(
        self, entity: Entity, count: int, *, modified_at: datetime | None = None
    ) -> list[str]:
        ids: list[str] = []
        with self.app.lock:
            org_id = None
            if entity is Entity.OPPORTUNITY:
                stamp = self._next_stamp()
                org_id = self.app.user_create(
                    "organizations", {"name": f"Harness account {self._counter}"},
                    add_ts=stamp, update_ts=stamp)
            for _ in range(count):
                self._counter += 1
                stamp = int(modified_at.timestamp()) if modified_at else self._next_stamp()
                fields: dict[str, Any]
                if entity is Entity.ACCOUNT:
                    fields = {"name": f"Harness org {self._counter}",
                              "website": f"org{self._counter}.example"}
                else:
                    fields = {"title": f"Harness deal {self._counter}", "org_id": org_id,
                              "value": 100.0 + self._counter, "currency": "EUR",
                              "Registration status": "Active"}
                ids.append(str(self.app.user_create(OBJECT[entity], fields, add_ts=stamp,
                                                    update_ts=stamp)))
        return ids

    def modify(self, entity: Entity, record_id: str, field: str, value: Any) -> None:
        self.app.user_update(OBJECT[entity], int(record_id), {field: value})

    def delete(self, entity: Entity, record_id: str) -> None:
        self.app.user_delete(OBJECT[entity], int(record_id))

    def stored_value(self, entity: Entity, record_id: str, field: str) -> Any:
        with self.app.lock:
            if self.app.company.fields.custom_by_name(OBJECT[entity], field) is not None:
                return self.app.company.custom_value(OBJECT[entity], int(record_id), field)
            return self.app.record_data(OBJECT[entity], int(record_id)).get(field)

    def drop_field(self, entity: Entity, field: str) -> None:
        with self.app.lock:
            self.app.company.drop_field(OBJECT[entity], field)

    def reject_writes(self, entity: Entity, record_ids: Sequence[str]) -> None:
        self.app.faults.rejections.append(
            Rejection(object=OBJECT[entity], ids=[str(i) for i in record_ids],
                      message="Validation rule: record is locked by the sandbox")
        )

    def corrupt(self, entity: Entity, record_id: str) -> None:
        with self.app.lock:
            self.app.company.corrupt(OBJECT[entity], int(record_id))

    def quota(self, *, share: float, limit: int) -> QuotaGovernor:
        self.app.limits.daily_tokens = limit
        self.app.limits.set_spent(0)
        return QuotaGovernor(unit="tokens", window="day", limit=None, share=share,
                             clock=self.now)  # as wiring.build_pipedrive builds it

    def renew_budget(self) -> None:
        self.advance(timedelta(days=1))  # past midnight server time: a fresh token budget

    def advance(self, delta: timedelta) -> None:
        """Move the sandbox's clock (vendor-specific tests: daily reset, 30-day window)."""
        self._offset += delta.total_seconds()

    def stop(self) -> None:
        self.running.stop()


def make_harness() -> PipedriveHarness:
    return PipedriveHarness()
