"""The HubSpot sandbox against HubSpot's documented behaviour, driven with plain requests:
auth, lists, single reads and CRM search (batch, metadata and limits: test_hubspot_api)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox.hubspot import HubSpotSandbox
from sandbox.serving import RunningSandbox, serve
from sandbox.world import CrmSeed, SeedAccount, SeedDeal, SeedUser

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def small_seed(companies: int = 30, deals: int = 45) -> CrmSeed:
    return CrmSeed(
        connection="dist-a", vendor="hubspot", role="distributor", distributor_id="D-A",
        users=[SeedUser("u1", "Ann Lee", "ann@dist-a.example")],
        accounts=[
            SeedAccount(
                key=f"a{i}", name=f"Acme {i} GmbH", website=f"https://www.acme{i}.de",
                country="DE", duns=f"31{i:07d}", owner_user="u1", channel_owner="D-A",
                created_at=T0, modified_at=T0 + timedelta(hours=i % 24, minutes=i),
            )
            for i in range(companies)
        ],
        deals=[
            SeedDeal(
                key=f"d{i}", account_key=f"a{i % companies}", name=f"Pumps {i}",
                amount=Decimal("1250.50") + i, currency="EUR", stage=("open", "won", "lost")[i % 3],
                close_date=date(2026, 6, 30), created_at=T0,
                modified_at=T0.replace(day=2) + timedelta(minutes=i), registered_by="D-A",
                registration_status="active", registration_expires_at=date(2026, 9, 1),
            )
            for i in range(deals)
        ],
    )


def stop_soon(running: RunningSandbox) -> None:
    """werkzeug notices a shutdown only at its next 0.5 s poll: finish it in the background."""
    threading.Thread(target=running.stop, daemon=True).start()


def seeded_sandbox() -> Iterator[tuple[HubSpotSandbox, RunningSandbox]]:
    """Body of the ``hs`` fixtures: a small seeded portal, served until the test ends."""
    app = HubSpotSandbox.from_seed(small_seed(), search_per_second=None)
    running = serve(app)
    try:
        yield app, running
    finally:
        stop_soon(running)


@pytest.fixture
def hs() -> Iterator[tuple[HubSpotSandbox, RunningSandbox]]:
    yield from seeded_sandbox()


class Client:
    def __init__(self, running: RunningSandbox, token: str) -> None:
        self.base = running.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=10)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=10)


@pytest.fixture
def api(hs: tuple[HubSpotSandbox, RunningSandbox]) -> Client:
    return Client(hs[1], hs[0].token)


def modified_gte(ms: int) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(ms)}]}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]}


# -- auth -------------------------------------------------------------------------------------

def test_missing_or_wrong_token_is_401_in_hubspot_shape(hs: tuple[HubSpotSandbox, Any]) -> None:
    _, running = hs
    for headers in ({}, {"Authorization": "Bearer pat-na1-wrong"}):
        r = requests.get(running.base_url + "/crm/v3/objects/companies", headers=headers, timeout=5)
        assert r.status_code == 401
        body = r.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["correlationId"] and body["message"]


def test_expired_token_is_401_and_a_rotated_token_works(hs: tuple[HubSpotSandbox, Any]) -> None:
    app, running = hs
    old = app.token
    app.faults.expire_tokens()
    r = Client(running, old).get("/crm/v3/objects/companies")
    assert r.status_code == 401 and r.json()["category"] == "EXPIRED_AUTHENTICATION"
    new = requests.post(running.base_url + "/__sandbox/rotate_token", timeout=5).json()
    assert new["access_token"].startswith("pat-na1-")
    assert Client(running, new["access_token"]).get("/crm/v3/objects/companies").status_code == 200


# -- list -------------------------------------------------------------------------------------

def test_list_defaults_to_10_and_pages_with_after_and_link(api: Client) -> None:
    first = api.get("/crm/v3/objects/companies").json()
    assert len(first["results"]) == 10
    nxt = first["paging"]["next"]
    assert nxt["link"].startswith(api.base) and f"after={nxt['after']}" in nxt["link"]
    seen = [r["id"] for r in first["results"]]
    after = nxt["after"]
    while after:
        page = api.get("/crm/v3/objects/companies", limit=7, after=after).json()
        seen += [r["id"] for r in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
    assert len(seen) == len(set(seen)) == 30
    assert seen == sorted(seen, key=int)


def test_list_limit_over_100_is_refused(api: Client) -> None:
    assert api.get("/crm/v3/objects/deals", limit=100).status_code == 200
    r = api.get("/crm/v3/objects/deals", limit=101)
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"


def test_list_returns_requested_and_system_properties_as_strings(api: Client) -> None:
    row = api.get("/crm/v3/objects/deals", limit=1,
                  properties="dealname,amount,registration_expiry_date,nope").json()["results"][0]
    props = row["properties"]
    assert set(props) == {"dealname", "amount", "registration_expiry_date", "createdate",
                          "hs_lastmodifieddate", "hs_object_id"}
    assert props["amount"] == "1250.50" and props["hs_object_id"] == row["id"]
    assert props["registration_expiry_date"] == "2026-09-01"
    assert props["hs_lastmodifieddate"] == row["updatedAt"] == "2026-01-02T00:00:00.000Z"
    assert row["archived"] is False and "archivedAt" not in row


def test_list_associations_inline(api: Client) -> None:
    row = api.get("/crm/v3/objects/deals", limit=1, associations="companies").json()["results"][0]
    types = {a["type"] for a in row["associations"]["companies"]["results"]}
    assert types == {"deal_to_company", "deal_to_company_unlabeled"}


def test_archived_true_returns_only_archived_and_keeps_modified_date(
    hs: tuple[HubSpotSandbox, Any], api: Client
) -> None:
    app, _ = hs
    rid = api.get("/crm/v3/objects/companies", limit=1).json()["results"][0]["id"]
    before = app.account.get("companies", rid)["hs_lastmodifieddate"]
    app.account.archive("companies", rid)

    archived = api.get("/crm/v3/objects/companies", archived="true", limit=100).json()["results"]
    live = api.get("/crm/v3/objects/companies", limit=100).json()["results"]
    assert [r["id"] for r in archived] == [rid]
    assert archived[0]["archived"] is True and archived[0]["archivedAt"]
    assert archived[0]["properties"]["hs_lastmodifieddate"] == before
    assert rid not in {r["id"] for r in live}
    assert api.get(f"/crm/v3/objects/companies/{rid}").status_code == 404
    assert api.get(f"/crm/v3/objects/companies/{rid}", archived="true").status_code == 200


def test_get_single_object_and_404_shape(api: Client) -> None:
    rid = api.get("/crm/v3/objects/deals", limit=1).json()["results"][0]["id"]
    body = api.get(f"/crm/v3/objects/deals/{rid}", properties="dealname").json()
    assert body["id"] == rid and body["properties"]["dealname"] == "Pumps 0"
    missing = api.get("/crm/v3/objects/deals/999")
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND" and missing.json()["status"] == "error"


# -- search -----------------------------------------------------------------------------------

def test_search_gte_sorted_ascending_with_total_and_offset_paging(api: Client) -> None:
    body = {**modified_gte(0), "limit": 20, "properties": ["dealname"]}
    first = api.post("/crm/v3/objects/deals/search", body).json()
    assert first["total"] == 45 and len(first["results"]) == 20
    assert first["paging"]["next"]["after"] == "20"
    rest = api.post("/crm/v3/objects/deals/search", {**body, "after": "20", "limit": 200}).json()
    assert "paging" not in rest
    stamps = [r["properties"]["hs_lastmodifieddate"] for r in first["results"] + rest["results"]]
    assert stamps == sorted(stamps) and len(stamps) == 45


def test_search_accepts_epoch_ms_and_iso_values(api: Client) -> None:
    cut = int(datetime(2026, 1, 2, 0, 30, tzinfo=UTC).timestamp() * 1000)
    as_ms = api.post("/crm/v3/objects/deals/search", {**modified_gte(cut), "limit": 200}).json()
    as_iso = api.post("/crm/v3/objects/deals/search", {**modified_gte(0), "limit": 200,
        "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate",
                                       "operator": "GTE", "value": "2026-01-02T00:30:00Z"}]}],
    }).json()
    assert as_ms["total"] == as_iso["total"] == 15
    assert [r["id"] for r in as_ms["results"]] == [r["id"] for r in as_iso["results"]]


@pytest.mark.parametrize(("flt", "expected"), [
    ({"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}, 15),
    ({"propertyName": "dealstage", "operator": "NEQ", "value": "closedwon"}, 30),
    ({"propertyName": "amount", "operator": "LT", "value": "1255.5"}, 5),
    ({"propertyName": "amount", "operator": "LTE", "value": "1255.5"}, 6),
    ({"propertyName": "amount", "operator": "GT", "value": "1290.5"}, 4),
    ({"propertyName": "amount", "operator": "BETWEEN", "value": "1260", "highValue": "1262"}, 2),
    ({"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]}, 30),
    ({"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedwon"]}, 30),
    ({"propertyName": "reassign_to", "operator": "NOT_HAS_PROPERTY"}, 45),
    ({"propertyName": "registered_by", "operator": "HAS_PROPERTY"}, 45),
    ({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "pumps"}, 45),
])
def test_search_operators(api: Client, flt: dict[str, Any], expected: int) -> None:
    body = {"filterGroups": [{"filters": [flt]}], "limit": 1}
    r = api.post("/crm/v3/objects/deals/search", body)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == expected


def test_filter_groups_are_ored_and_filters_anded(api: Client) -> None:
    won = {"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}
    cheap = {"propertyName": "amount", "operator": "LT", "value": "1260"}
    both = api.post("/crm/v3/objects/deals/search",
                    {"filterGroups": [{"filters": [won, cheap]}]}).json()["total"]
    either = api.post("/crm/v3/objects/deals/search",
                      {"filterGroups": [{"filters": [won]}, {"filters": [cheap]}]}).json()["total"]
    assert (both, either) == (3, 15 + 10 - 3)


def test_search_limits_are_enforced(api: Client) -> None:
    flt = {"propertyName": "amount", "operator": "GT", "value": "0"}
    assert api.post("/crm/v3/objects/deals/search", {"limit": 200}).status_code == 200
    assert api.post("/crm/v3/objects/deals/search", {"limit": 201}).status_code == 400
    six_groups = {"filterGroups": [{"filters": [flt]}] * 6}
    assert api.post("/crm/v3/objects/deals/search", six_groups).status_code == 400
    five_groups = {"filterGroups": [{"filters": [flt] * 5}] * 5}
    assert api.post("/crm/v3/objects/deals/search", five_groups).status_code == 200
    too_many = {"filterGroups": [{"filters": [flt] * 6}] * 5}
    r = api.post("/crm/v3/objects/deals/search", too_many)
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    bad_op = {"filterGroups": [{"filters": [{**flt, "operator": "LIKE"}]}]}
    assert api.post("/crm/v3/objects/deals/search", bad_op).status_code == 400
    unknown = {"filterGroups": [{"filters": [{**flt, "propertyName": "nope"}]}]}
    assert api.post("/crm/v3/objects/deals/search", unknown).status_code == 400


def test_search_cap_answers_400_beyond_it() -> None:
    app = HubSpotSandbox(search_per_second=None, search_result_cap=25)
    for i in range(40):
        app.account.create("companies", {"name": f"C{i}"})
    running = serve(app)
    try:
        api = Client(running, app.token)
        body: dict[str, Any] = {**modified_gte(0), "limit": 10}
        page = api.post("/crm/v3/objects/companies/search", body).json()
        pages = 1
        while "paging" in page:
            r = api.post("/crm/v3/objects/companies/search",
                         {**body, "after": page["paging"]["next"]["after"]})
            if r.status_code == 400:
                break
            page, pages = r.json(), pages + 1
        assert pages == 3 and page["total"] == 40
        assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    finally:
        stop_soon(running)
    default = HubSpotSandbox(search_per_second=None)
    running = serve(default)
    try:
        r = Client(running, default.token).post(
            "/crm/v3/objects/companies/search", {"after": "10000", "limit": 10})
        assert r.status_code == 400
    finally:
        stop_soon(running)


def test_search_never_returns_archived(hs: tuple[HubSpotSandbox, Any], api: Client) -> None:
    app, _ = hs
    rid = api.get("/crm/v3/objects/deals", limit=1).json()["results"][0]["id"]
    app.account.archive("deals", rid)
    found = api.post("/crm/v3/objects/deals/search", {**modified_gte(0), "limit": 200}).json()
    assert found["total"] == 44 and rid not in {r["id"] for r in found["results"]}


def test_search_sort_descending_and_by_other_property(api: Client) -> None:
    desc = api.post("/crm/v3/objects/deals/search", {"limit": 5, "sorts": [
        {"propertyName": "amount", "direction": "DESCENDING"}], "properties": ["amount"]}).json()
    amounts = [float(r["properties"]["amount"]) for r in desc["results"]]
    assert amounts == sorted(amounts, reverse=True) and amounts[0] == 1294.5
