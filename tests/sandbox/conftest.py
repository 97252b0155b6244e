"""Shared sandbox fixtures: any vendor's sandbox on a free port, with a client ready to call it.

``start_sandbox(vendor, faults=None, connection=None)`` starts one sandbox through the
public Python API (:func:`sandbox.launch.start_world`) seeded with :data:`SMALL_SEED`, and
returns a :class:`VendorClient` (plain ``requests``, CA pinned, vendor auth applied). Every
sandbox a test starts is stopped afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.http import make_session
from sandbox.core import Faults
from sandbox.launch import LaunchedSandbox, SandboxSet, start_world
from sandbox.world import CrmSeed, GroundTruth, SeedAccount, SeedDeal, SeedUser, World

VENDORS = ("salesforce", "hubspot", "pipedrive", "dynamics")
SF_DATA = "/services/data/v66.0"
DV_API = "/api/data/v9.2"


def small_seed(connection: str, vendor: str) -> CrmSeed:
    """Two customers with one deal each: enough to read a page and write a record."""
    at = datetime(2026, 10, 1, 9, tzinfo=UTC)
    return CrmSeed(
        connection=connection, vendor=vendor, role="distributor", distributor_id="dist-a",
        users=[SeedUser(key="u1", name="Ann Lee", email="ann@dist-a.example")],
        accounts=[SeedAccount(key=f"A{n}", name=f"Acme {n} GmbH", website=f"acme{n}.de",
                              country="DE", owner_user="u1", created_at=at, modified_at=at)
                  for n in (1, 2)],
        deals=[SeedDeal(key=f"D{n}", account_key=f"A{n}", name=f"Pumps {n}",
                        amount=Decimal("1200.00"), currency="EUR", stage="open",
                        close_date=date(2027, 1, 31), created_at=at, modified_at=at,
                        owner_user="u1") for n in (1, 2)],
    )


@dataclass
class VendorClient:
    """One running sandbox and the vendor-specific way to call it."""

    vendor: str
    box: LaunchedSandbox
    http: requests.Session
    auth: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.box.app

    @property
    def base_url(self) -> str:
        return self.box.base_url

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.http.request(method, self.base_url + path, headers=headers, timeout=10,
                                 **kwargs)

    def read(self) -> requests.Response:
        """A list call every vendor answers with a page of accounts."""
        paths = {
            "salesforce": f"{SF_DATA}/query?q=SELECT+Id,Name+FROM+Account",
            "hubspot": "/crm/v3/objects/companies?limit=10",
            "pipedrive": "/api/v2/organizations",
            "dynamics": f"{DV_API}/accounts?$select=name",
        }
        return self.call("GET", paths[self.vendor])

    def deal_id(self, key: str) -> str:
        """The vendor id of seeded deal ``key``."""
        if self.vendor == "dynamics":
            from sandbox.dynamics.seed import record_id

            return record_id(self.box.connection, "deal", key)
        ids = self.app.seed_ids
        return str(ids.get(f"deal:{key}", ids.get(key)))

    def rename_deal(self, key: str, name: str) -> requests.Response:
        """The vendor's single-record update of a deal's name."""
        rid = self.deal_id(key)
        if self.vendor == "salesforce":
            return self.call("PATCH", f"{SF_DATA}/sobjects/Opportunity/{rid}", json={"Name": name})
        if self.vendor == "hubspot":
            return self.call("PATCH", f"/crm/v3/objects/deals/{rid}",
                             json={"properties": {"dealname": name}})
        if self.vendor == "pipedrive":
            return self.call("PATCH", f"/api/v2/deals/{rid}", json={"title": name})
        return self.call("PATCH", f"{DV_API}/opportunities({rid})", json={"name": name},
                         headers={"If-Match": "*"})

    def refresh_auth(self) -> None:
        self.auth = _auth(self.vendor, self.box, self.http)

    def admin(self, method: str, action: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.base_url}/__sandbox/{action}", timeout=10,
                                 **kwargs)


def _auth(vendor: str, box: LaunchedSandbox, http: requests.Session) -> dict[str, str]:
    creds = box.credentials()
    if vendor == "salesforce":
        return {"Authorization": f"Bearer {creds['session_id']}"}
    if vendor == "hubspot":
        return {"Authorization": f"Bearer {creds['access_token']}"}
    if vendor == "pipedrive":
        return {"x-api-token": creds["api_token"]}
    answer = http.post(f"{creds['authority']}/oauth2/v2.0/token", timeout=10, data={
        "client_id": creds["client_id"], "client_secret": creds["client_secret"],
        "grant_type": "client_credentials", "scope": creds["scope"]})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}",
            "OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}


@pytest.fixture(scope="session")
def sandbox_tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-tls")


class SandboxStarter:
    """Starts vendor sandboxes (seeded with :func:`small_seed`) and stops them all at once."""

    def __init__(self, tls_dir: Path) -> None:
        self.tls_dir = tls_dir
        self.started: list[SandboxSet] = []
        self.clients: list[VendorClient] = []

    def __call__(self, vendor: str, *, faults: Faults | None = None,
                 connection: str | None = None) -> VendorClient:
        name = connection or f"{vendor}-{len(self.started)}"
        world = World(seed=0, crms=[small_seed(name, vendor)], truth=GroundTruth())
        boxes = start_world(world, tls_dir=self.tls_dir,
                            faults={name: faults} if faults else None)
        self.started.append(boxes)
        box = boxes[name]
        http = make_session(ca_bundle=str(box.ca_file)) if box.ca_file else requests.Session()
        http.trust_env = False
        client = VendorClient(vendor=vendor, box=box, http=http)
        if faults is None:  # with faults at start, the test decides when to authenticate
            client.refresh_auth()
        self.clients.append(client)
        return client

    def stop_all(self) -> None:
        for client in self.clients:
            client.http.close()
        self.clients.clear()
        stoppers = [threading.Thread(target=s.stop) for s in self.started]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self.started.clear()


@pytest.fixture
def start_sandbox(sandbox_tls_dir: Path) -> Iterator[SandboxStarter]:
    starter = SandboxStarter(sandbox_tls_dir)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def running(sandbox_tls_dir: Path) -> Iterator[dict[str, VendorClient]]:
    """One sandbox per vendor for the whole module, with a client each."""
    starter = SandboxStarter(sandbox_tls_dir)
    yield {vendor: starter(vendor) for vendor in VENDORS}
    starter.stop_all()
