"""Contract-suite harness for Salesforce: an HTTPS sandbox org and a JWT-bearer connector."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.base import Entity
from connectors.http import QuotaGovernor, RetryPolicy, make_session
from connectors.salesforce import JwtBearerAuth, SalesforceConnector, daily_quota
from sandbox.core import Faults, Rejection
from sandbox.salesforce import SalesforceSandbox, serve_https
from sandbox.serving import RunningSandbox

OBJECTS = {Entity.ACCOUNT: "Account", Entity.OPPORTUNITY: "Opportunity"}
FIELDS = {
    Entity.ACCOUNT: ("Name", "Website", "BillingCountry", "Channel_Owner__c", "Owner.Email",
                     "Channel_Conflict_Reason__c"),
    Entity.OPPORTUNITY: ("Name", "AccountId", "Account.Name", "Amount", "StageName",
                         "CloseDate", "Partner_Account__r.Distributor_Id__c",
                         "Channel_Conflict_Reason__c"),
}
WRITABLE = "Channel_Conflict_Reason__c"
DAY_S = 86_400.0
_TLS_DIR = Path(tempfile.gettempdir()) / "channelsync-test-sf-tls"


def no_sleep(_seconds: float) -> None:
    return None


class SalesforceHarness:
    vendor = "salesforce"

    def __init__(self, **options: Any) -> None:
        self.app = SalesforceSandbox(faults=Faults(), **options)
        self.running: RunningSandbox = serve_https(self.app, _TLS_DIR)
        self.creds = self.app.credentials()
        self._last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        self._clock_lock = threading.Lock()
        self._account: str | None = None
        self.offset = 0.0  # added to the governor's clock: "a later cycle"

    def tick(self) -> datetime:
        """A later whole second for every user action (Salesforce stamps whole seconds)."""
        with self._clock_lock:
            now = datetime.now(UTC).replace(microsecond=0)
            self._last = max(now, self._last + timedelta(seconds=1))
            return self._last

    def connector(self, *, page_size: int | None = None, **options: Any) -> SalesforceConnector:
        creds = self.creds
        return SalesforceConnector(
            session=make_session(ca_bundle=creds["ca_file"]),
            auth=JwtBearerAuth(login_url=creds["login_url"], consumer_key=creds["consumer_key"],
                               username=creds["username"], private_key=creds["private_key_pem"]),
            retry=options.pop("retry", None) or RetryPolicy(sleep=no_sleep),
            quota=options.pop("quota", None) or daily_quota(),
            page_size=page_size or 2000,
            **options,
        )

    def fields(self, entity: Entity) -> Sequence[str]:
        return FIELDS[entity]

    def writable_field(self, entity: Entity) -> str:
        return WRITABLE

    def min_page_size(self) -> int:
        return 200

    def create(self, entity: Entity, count: int, *,
               modified_at: datetime | None = None) -> list[str]:
        org = self.app.org
        ids = []
        for n in range(count):
            at = modified_at or self.tick()
            if entity is Entity.ACCOUNT:
                values: dict[str, Any] = {"Name": f"Harness Account {n}",
                                          "Website": f"https://h{n}.example"}
            else:
                if self._account is None:
                    self._account = org.create("Account", {"Name": "Harness Customer"},
                                               at=self.tick())
                values = {"Name": f"Harness Deal {n}", "AccountId": self._account,
                          "StageName": "Prospecting", "CloseDate": "2026-12-31",
                          "Amount": 1000 + n}
            ids.append(org.create(OBJECTS[entity], values, at=at))
        return ids

    def modify(self, entity: Entity, record_id: str, field: str, value: Any) -> None:
        self.app.org.update(OBJECTS[entity], record_id, {field: value}, at=self.tick())

    def delete(self, entity: Entity, record_id: str) -> None:
        self.app.org.delete(OBJECTS[entity], record_id, at=self.tick())

    def stored_value(self, entity: Entity, record_id: str, field: str) -> Any:
        row = self.app.org.get(OBJECTS[entity], record_id)
        return None if row is None else row.get(field)

    def drop_field(self, entity: Entity, field: str) -> None:
        self.app.org.drop_field(OBJECTS[entity], field)

    def reject_writes(self, entity: Entity, record_ids: Sequence[str]) -> None:
        self.app.faults.rejections.append(
            Rejection(object=OBJECTS[entity], ids=list(record_ids),
                      message="Channel fields are locked while the deal is in approval"))

    def corrupt(self, entity: Entity, record_id: str) -> None:
        table = self.app.org.tables[OBJECTS[entity]]
        with self.app.lock:
            table[record_id] = {**table[record_id], "SystemModstamp": "not-a-date"}

    def quota(self, *, share: float, limit: int) -> QuotaGovernor:
        self.app.daily_limit = limit
        self.app.reset_api_usage()
        return QuotaGovernor(unit="requests", window="day", limit=None, share=share,
                             clock=self.clock)  # as daily_quota(share=...) builds it

    def renew_budget(self) -> None:
        self.app.reset_api_usage()  # the rolling 24 hours moved on
        self.offset += DAY_S

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def stop(self) -> None:
        self.running.stop()


def make_harness() -> SalesforceHarness:
    return SalesforceHarness()
