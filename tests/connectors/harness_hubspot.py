"""Contract-suite harness for HubSpot: the sandbox over HTTPS (its CA pinned through the
SDK's ``ssl_ca_cert``) and a connector whose retries and pacing never really sleep."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hubspot import HubSpot

from connectors.base import Entity
from connectors.http import QuotaGovernor, RetryPolicy
from connectors.hubspot import ASSOCIATED_COMPANY, HubSpotConnector
from sandbox.core import Rejection
from sandbox.hubspot import HubSpotSandbox
from sandbox.hubspot.account import now_ms
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import TlsFiles, ensure_tls

DAY_S = 86_400.0
OBJECTS = {Entity.ACCOUNT: "companies", Entity.OPPORTUNITY: "deals"}
FIELDS = {
    Entity.ACCOUNT: ("name", "domain", "country", "channel_conflict_reason"),
    Entity.OPPORTUNITY: ("dealname", "amount", "dealstage", "channel_conflict_reason",
                         ASSOCIATED_COMPANY),
}


@cache
def sandbox_tls() -> TlsFiles:
    return ensure_tls(Path(tempfile.mkdtemp(prefix="hubspot-tls-")))


def no_sleep(_: float) -> None:
    return None


class HubSpotHarness:
    vendor = "hubspot"

    def __init__(self, **sandbox_options: Any) -> None:
        options: dict[str, Any] = {"search_per_second": None, "burst_limit": None}
        options.update(sandbox_options)
        self.app = HubSpotSandbox(**options)
        self.account = self.app.account
        self.account.add_owner(email="owner@example.com", first="Olga", last="Owner")
        self.company = self.account.create("companies", {"name": "Anchor Ltd"})
        self.tls = sandbox_tls()
        self.running: RunningSandbox = serve(self.app, tls=self.tls)
        self._last_ms = now_ms()
        self.offset = 0.0  # added to the governor's clock: "a later cycle"

    def client(self) -> HubSpot:
        return HubSpot(access_token=self.app.token, host=self.running.base_url,
                       ssl_ca_cert=str(self.tls.ca_file))

    def connector(self, *, page_size: int | None = None, **options: Any) -> HubSpotConnector:
        settings: dict[str, Any] = {"search_per_second": None, "sleep": no_sleep}
        settings.update(options)
        return HubSpotConnector(
            client=self.client(),
            retry=settings.pop("retry", None) or RetryPolicy(sleep=no_sleep),
            quota=settings.pop("quota", None)
            or QuotaGovernor(unit="requests", window="day", limit=None, share=0.5),
            page_size=page_size or 200,
            **settings,
        )

    def fields(self, entity: Entity) -> Sequence[str]:
        return FIELDS[entity]

    def writable_field(self, entity: Entity) -> str:
        return "channel_conflict_reason"

    def min_page_size(self) -> int:
        return 10

    def _stamp(self) -> datetime:
        self._last_ms = max(now_ms(), self._last_ms + 1)
        return datetime.fromtimestamp(self._last_ms / 1000, UTC)

    def create(
        self, entity: Entity, count: int, *, modified_at: datetime | None = None
    ) -> list[str]:
        ids = []
        for n in range(count):
            stamp = modified_at or self._stamp()
            if entity is Entity.ACCOUNT:
                props = {"name": f"Company {len(self.account.objects['companies'].records)}",
                         "domain": f"c{n}-{self._last_ms}.example", "country": "Germany"}
                ids.append(self.account.create("companies", props, modified_at=stamp))
            else:
                props = {"dealname": f"Deal {n}", "amount": "100", "dealstage": "qualifiedtobuy"}
                ids.append(self.account.create("deals", props, modified_at=stamp,
                                               companies=[self.company]))
        return ids

    def modify(self, entity: Entity, record_id: str, field: str, value: Any) -> None:
        self.account.update(OBJECTS[entity], record_id, {field: value})

    def delete(self, entity: Entity, record_id: str) -> None:
        self.account.archive(OBJECTS[entity], record_id)

    def stored_value(self, entity: Entity, record_id: str, field: str) -> Any:
        return self.account.get(OBJECTS[entity], record_id).get(field)

    def drop_field(self, entity: Entity, field: str) -> None:
        self.account.archive_property(OBJECTS[entity], field)

    def reject_writes(self, entity: Entity, record_ids: Sequence[str]) -> None:
        self.app.faults.rejections.append(
            Rejection(object=OBJECTS[entity], ids=list(record_ids),
                      message="Blocked by a validation rule"))

    def corrupt(self, entity: Entity, record_id: str) -> None:
        self.account.corrupt(OBJECTS[entity], record_id)

    def quota(self, *, share: float, limit: int) -> QuotaGovernor:
        self.app.limits.daily = limit
        self.app.limits.used_today = 0
        return QuotaGovernor(unit="requests", window="day", limit=None, share=share,
                             clock=self.clock)  # as wiring.build_hubspot builds it

    def renew_budget(self) -> None:
        self.app.limits.used_today = 0  # a new day in the account's time zone
        self.offset += DAY_S

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def stop(self) -> None:
        # werkzeug notices a shutdown only at its next 0.5 s poll: finish it in the background.
        threading.Thread(target=self.running.stop, daemon=True).start()


def make_harness(**sandbox_options: Any) -> HubSpotHarness:
    return HubSpotHarness(**sandbox_options)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
