"""Contract-suite harness for the Dataverse connector: a sandbox over HTTPS, msal tokens."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.base import Entity
from connectors.dynamics import DynamicsConnector, MsalTokenProvider
from connectors.http import QuotaGovernor, RetryPolicy, make_session
from sandbox.core import Rejection
from sandbox.dynamics import DynamicsApp
from sandbox.dynamics.app import ServiceProtection
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import ensure_tls

_TABLE = {Entity.ACCOUNT: "account", Entity.OPPORTUNITY: "opportunity"}
ACCOUNT_FIELDS = ("name", "websiteurl", "address1_country", "new_duns", "new_vatid",
                  "new_channelowner", "_ownerid_value", "new_partnerid", "createdon",
                  "modifiedon", "new_channelconflictreason")
OPPORTUNITY_FIELDS = ("name", "_parentaccountid_value", "estimatedvalue",
                      "transactioncurrencyid", "salesstage", "statecode", "estimatedclosedate",
                      "createdon", "modifiedon", "new_registrationstatus",
                      "new_registrationexpireson", "new_registeredby",
                      "new_channelconflictreason")
_CERTIFICATE: tuple[str, str] | None = None
WINDOW_S = 300.0


def _certificate() -> tuple[str, str]:
    global _CERTIFICATE  # one RSA key per test session keeps the suite fast
    if _CERTIFICATE is None:
        from sandbox.dynamics import make_certificate

        _CERTIFICATE = make_certificate()
    return _CERTIFICATE


class DynamicsHarness:
    vendor = "dynamics"

    def __init__(self, *, use_change_tracking: bool = True, **app_options: Any) -> None:
        # one CA per process: parallel test workers must not race on the same files
        self.tls = ensure_tls(Path(tempfile.gettempdir()) / f"channelsync-dyn-tls-{os.getpid()}")
        self.app = DynamicsApp(certificate=_certificate(), **app_options)
        self.running: RunningSandbox = serve(self.app, tls=self.tls)
        self.app.base_url = self.running.base_url
        self.use_change_tracking = use_change_tracking
        self._counter = 0
        self.offset = 0.0  # added to the connector's clock: "a later cycle"

    def connector(self, *, page_size: int | None = None, share: float = 1.0,
                  **options: Any) -> DynamicsConnector:
        creds = self.app.credentials()
        session = make_session(ca_bundle=str(self.tls.ca_file))
        tokens = MsalTokenProvider(client_id=creds["client_id"], authority=creds["authority"],
                                   credential=creds["client_secret"],
                                   environment_url=creds["environment_url"], http_client=session)
        defaults: dict[str, Any] = {
            "session": session, "environment_url": creds["environment_url"],
            "token_provider": tokens, "retry": RetryPolicy(attempts=4, sleep=lambda _s: None),
            "quota": QuotaGovernor(unit="requests", window="5min", limit=6000, share=share),
            "page_size": page_size or 5000, "use_change_tracking": self.use_change_tracking,
            "clock": self.clock}
        return DynamicsConnector(**{**defaults, **options})

    def fields(self, entity: Entity) -> Sequence[str]:
        return ACCOUNT_FIELDS if entity is Entity.ACCOUNT else OPPORTUNITY_FIELDS

    def writable_field(self, entity: Entity) -> str:
        return "new_channelconflictreason"

    def min_page_size(self) -> int:
        return 5  # Dataverse honours any odata.maxpagesize from 1 to 5000

    def create(self, entity: Entity, count: int, *, modified_at: datetime | None = None
               ) -> list[str]:
        ids = []
        for _ in range(count):
            self._counter += 1
            n = self._counter
            if entity is Entity.ACCOUNT:
                ids.append(self.app.create_record("account", {
                    "name": f"Account {n}", "websiteurl": f"https://a{n}.example"},
                    modified_at=modified_at))
            else:
                account = self.app.create_record("account", {"name": f"Customer {n}"})
                ids.append(self.app.create_record("opportunity", {
                    "name": f"Deal {n}", "_parentaccountid_value": account,
                    "estimatedvalue": 1000.0 + n, "statecode": 0, "salesstage": 1,
                    "new_registrationstatus": 100000001}, modified_at=modified_at))
        return ids

    def _stored(self, entity: Entity, field: str, value: Any) -> Any:
        attr = self.app.store.tables[_TABLE[entity]].definition.by_prop().get(field)
        if attr is not None and attr.options and isinstance(value, str):
            return {label: v for v, label in attr.options.items()}[value]
        return value

    def modify(self, entity: Entity, record_id: str, field: str, value: Any) -> None:
        self.app.update_record(_TABLE[entity], record_id, {field: self._stored(entity, field,
                                                                               value)})

    def delete(self, entity: Entity, record_id: str) -> None:
        self.app.delete_record(_TABLE[entity], record_id)

    def stored_value(self, entity: Entity, record_id: str, field: str) -> Any:
        row = self.app.get_record(_TABLE[entity], record_id)
        assert row is not None, f"{entity} {record_id} does not exist"
        value = row.get(field)
        attr = self.app.store.tables[_TABLE[entity]].definition.by_prop().get(field)
        if attr is not None and attr.options and value is not None and attr.type != "Boolean":
            return attr.options[value]
        return value

    def drop_field(self, entity: Entity, field: str) -> None:
        self.app.drop_attribute(_TABLE[entity], field)

    def reject_writes(self, entity: Entity, record_ids: Sequence[str]) -> None:
        self.app.faults.rejections.append(Rejection(object=_TABLE[entity], ids=list(record_ids),
                                                    message="Blocked by a sandbox plug-in"))

    def corrupt(self, entity: Entity, record_id: str) -> None:
        self.app.corrupt_record(_TABLE[entity], record_id, "modifiedon", "not-a-date")

    def quota(self, *, share: float, limit: int) -> QuotaGovernor:
        # wiring gives Dataverse its service-protection limit (6,000 per 5 minutes); the
        # connector counts the window itself and reads the remaining-requests header
        self.app.protection = ServiceProtection(limit=limit, window_s=WINDOW_S)
        return QuotaGovernor(unit="requests", window="5min", limit=limit, share=share,
                             clock=self.clock)

    def renew_budget(self) -> None:
        # the 5-minute window slid past every request made so far, here and at the server
        self.app.protection = ServiceProtection(limit=self.app.protection.limit,
                                                window_s=WINDOW_S)
        self.offset += WINDOW_S + 1

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def stop(self) -> None:  # the server's 0.5 s shutdown poll need not block the test
        threading.Thread(target=self.running.stop, daemon=True).start()


def make_harness(**options: Any) -> DynamicsHarness:
    return DynamicsHarness(**options)
