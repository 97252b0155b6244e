"""The HubSpot sandbox against HubSpot's documented behaviour, driven with plain requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox.core import Faults, Rejection, RunningSandbox, serve
from sandbox.hubspot import HubSpotSandbox
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


@pytest.fixture
def hs() -> Iterator[tuple[HubSpotSandbox, RunningSandbox]]:
    app = HubSpotSandbox.from_seed(small_seed(), search_per_second=None)
    running = serve(app)
    try:
        yield app, running
    finally:
        stop_soon(running)


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


# -- batch ------------------------------------------------------------------------------------

def test_batch_read_200_then_207_with_missing_ids(api: Client) -> None:
    ids = [r["id"] for r in api.get("/crm/v3/objects/companies", limit=3).json()["results"]]
    ok = api.post("/crm/v3/objects/companies/batch/read",
                  {"inputs": [{"id": i} for i in ids], "properties": ["name"]})
    assert ok.status_code == 200 and ok.json()["status"] == "COMPLETE"
    assert {r["id"] for r in ok.json()["results"]} == set(ids)
    partial = api.post("/crm/v3/objects/companies/batch/read",
                       {"inputs": [{"id": ids[0]}, {"id": "42"}], "properties": ["name"]})
    assert partial.status_code == 207
    err = partial.json()["errors"][0]
    assert err["category"] == "OBJECT_NOT_FOUND" and err["context"]["ids"] == ["42"]
    too_many = api.post("/crm/v3/objects/companies/batch/read",
                        {"inputs": [{"id": "1"}] * 101, "properties": []})
    assert too_many.status_code == 400


def test_batch_update_bumps_modified_and_reports_partial_failure(
    hs: tuple[HubSpotSandbox, Any], api: Client
) -> None:
    app, _ = hs
    ids = [r["id"] for r in api.get("/crm/v3/objects/deals", limit=4).json()["results"]]
    app.faults.rejections.append(Rejection(object="deals", ids=[ids[1]], message="Blocked"))
    before = app.account.get("deals", ids[0])["hs_lastmodifieddate"]
    r = api.post("/crm/v3/objects/deals/batch/update", {"inputs": [
        {"id": ids[0], "properties": {"channel_conflict": "true"}, "objectWriteTraceId": "t0"},
        {"id": ids[1], "properties": {"channel_conflict": "true"}, "objectWriteTraceId": "t1"},
        {"id": ids[2], "properties": {"registration_status": "bogus"}, "objectWriteTraceId": "t2"},
        {"id": "77", "properties": {"channel_conflict": "true"}, "objectWriteTraceId": "t3"},
        {"id": ids[3], "properties": {"hs_is_closed": "true"}, "objectWriteTraceId": "t4"},
    ]})
    assert r.status_code == 207
    body = r.json()
    assert body["numErrors"] == 4 and [x["id"] for x in body["results"]] == [ids[0]]
    by_trace = {e["context"]["objectWriteTraceId"][0]: e for e in body["errors"]}
    assert by_trace["t1"]["message"] == "Blocked" and by_trace["t1"]["context"]["ids"] == [ids[1]]
    assert by_trace["t2"]["subCategory"] == "INVALID_OPTION"
    assert by_trace["t3"]["category"] == "OBJECT_NOT_FOUND"
    assert by_trace["t4"]["subCategory"] == "READ_ONLY_VALUE"
    after = app.account.get("deals", ids[0])
    assert after["channel_conflict"] == "true"
    assert str(after["hs_lastmodifieddate"]) > str(before)
    assert app.account.get("deals", ids[1])["channel_conflict"] is None


def test_batch_update_all_ok_is_200_and_limits(api: Client) -> None:
    ids = [r["id"] for r in api.get("/crm/v3/objects/companies", limit=2).json()["results"]]
    ok = api.post("/crm/v3/objects/companies/batch/update", {"inputs": [
        {"id": i, "properties": {"channel_conflict_reason": "overlap"}} for i in ids]})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2
    assert "errors" not in ok.json()
    dup = api.post("/crm/v3/objects/companies/batch/update", {"inputs": [
        {"id": ids[0], "properties": {}}, {"id": ids[0], "properties": {}}]})
    assert dup.status_code == 400
    big = api.post("/crm/v3/objects/companies/batch/update", {"inputs": [
        {"id": str(n), "properties": {}} for n in range(101)]})
    assert big.status_code == 400


def test_single_patch_bumps_and_validates(hs: tuple[HubSpotSandbox, Any], api: Client) -> None:
    app, _ = hs
    row = api.get("/crm/v3/objects/companies", limit=1).json()["results"][0]
    url = f"{api.base}/crm/v3/objects/companies/{row['id']}"
    ok = api.session.patch(url, json={"properties": {"vat_id": "DE999"}}, timeout=5)
    assert ok.status_code == 200 and ok.json()["properties"]["vat_id"] == "DE999"
    assert ok.json()["updatedAt"] > row["updatedAt"]
    bad = api.session.patch(url, json={"properties": {"no_such": "x"}}, timeout=5)
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"
    gone = api.session.patch(f"{api.base}/crm/v3/objects/companies/77",
                             json={"properties": {"vat_id": "x"}}, timeout=5)
    assert gone.status_code == 404
    assert app.account.get("companies", row["id"])["vat_id"] == "DE999"


def test_search_sorts_given_as_property_names(api: Client) -> None:
    body = {"sorts": ["amount"], "limit": 3, "properties": ["amount"]}
    amounts = [float(r["properties"]["amount"])
               for r in api.post("/crm/v3/objects/deals/search", body).json()["results"]]
    assert amounts == [1250.5, 1251.5, 1252.5]


# -- metadata ---------------------------------------------------------------------------------

def test_properties_api(api: Client) -> None:
    props = {p["name"]: p for p in api.get("/crm/v3/properties/deals").json()["results"]}
    stage = props["dealstage"]
    assert stage["type"] == "enumeration" and stage["hubspotDefined"] is True
    assert {o["value"] for o in stage["options"]} >= {"closedwon", "closedlost"}
    custom = props["channel_conflict"]
    assert custom["hubspotDefined"] is False and custom["fieldType"] == "booleancheckbox"
    assert props["hs_is_closed"]["calculated"] is True
    assert props["hs_lastmodifieddate"]["modificationMetadata"]["readOnlyValue"] is True
    for key in ("name", "label", "type", "fieldType", "groupName", "options", "description"):
        assert key in custom
    one = api.get("/crm/v3/properties/0-3/registration_status").json()
    assert one["name"] == "registration_status"
    assert api.get("/crm/v3/properties/deals/nope").status_code == 404


def test_seed_ids_name_the_native_records(hs: tuple[HubSpotSandbox, Any]) -> None:
    app, _ = hs
    deal = app.account.get("deals", app.seed_ids["deal:d1"])
    assert deal["dealname"] == "Pumps 1" and deal["registration_status"] == "active"
    assert app.account.deal_companies[int(app.seed_ids["deal:d1"])] == [
        int(app.seed_ids["account:a1"])]
    company = app.account.get("companies", app.seed_ids["account:a1"])
    assert company["hubspot_owner_id"] == app.seed_ids["user:u1"]
    assert company["domain"] == "acme1.de" and company["duns_number"] == "310000001"


def test_owners_and_pipelines(api: Client) -> None:
    owners = api.get("/crm/v3/owners").json()["results"]
    assert owners[0]["email"] == "ann@dist-a.example" and owners[0]["type"] == "PERSON"
    deal = api.get("/crm/v3/objects/companies", limit=1, properties="hubspot_owner_id").json()
    assert deal["results"][0]["properties"]["hubspot_owner_id"] == owners[0]["id"]
    stages = api.get("/crm/v3/pipelines/deals").json()["results"][0]["stages"]
    assert {"closedwon", "closedlost"} <= {s["id"] for s in stages}
    assert all(s["metadata"]["isClosed"] in ("true", "false") for s in stages)


def test_v4_associations_per_record_and_batch(api: Client) -> None:
    deals = api.get("/crm/v3/objects/deals", limit=2).json()["results"]
    one = api.get(f"/crm/v4/objects/deals/{deals[0]['id']}/associations/companies").json()
    assert one["results"][0]["associationTypes"][0] == {
        "category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}
    batch = api.post("/crm/v4/associations/deals/companies/batch/read",
                     {"inputs": [{"id": d["id"]} for d in deals] + [{"id": "5"}]})
    assert batch.status_code == 207
    assert {r["from"]["id"] for r in batch.json()["results"]} == {d["id"] for d in deals}
    assert batch.json()["errors"][0]["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"
    too_many = api.post("/crm/v4/associations/deals/companies/batch/read",
                        {"inputs": [{"id": "1"}] * 1001})
    assert too_many.status_code == 400


# -- rate limits and faults -------------------------------------------------------------------

def test_ten_second_limit_headers_and_429_body() -> None:
    app = HubSpotSandbox(burst_limit=3, daily_limit=100, search_per_second=None)
    running = serve(app)
    try:
        api = Client(running, app.token)
        answers = [api.get("/crm/v3/objects/companies") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
        assert answers[0].headers["X-HubSpot-RateLimit-Remaining"] == "2"
        assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert answers[2].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "97"
        body = answers[3].json()
        assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["status"] == "error" and body["correlationId"]
    finally:
        stop_soon(running)


def test_daily_limit_429() -> None:
    app = HubSpotSandbox(burst_limit=None, daily_limit=2, search_per_second=None)
    running = serve(app)
    try:
        api = Client(running, app.token)
        codes = [api.get("/crm/v3/objects/companies").status_code for _ in range(3)]
        last = api.get("/crm/v3/objects/companies")
        assert codes == [200, 200, 429] and last.json()["policyName"] == "DAILY"
        assert last.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    finally:
        stop_soon(running)


def test_search_has_its_own_limit_and_no_rate_headers() -> None:
    app = HubSpotSandbox(search_per_second=2)
    running = serve(app)
    try:
        api = Client(running, app.token)
        codes = [api.post("/crm/v3/objects/companies/search", {}) for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert "X-HubSpot-RateLimit-Remaining" not in codes[0].headers
    finally:
        stop_soon(running)


def test_injected_faults_use_hubspot_shapes() -> None:
    app = HubSpotSandbox(faults=Faults(rate_limit_next=1, error_next=0), search_per_second=None)
    running = serve(app)
    try:
        api = Client(running, app.token)
        limited = api.get("/crm/v3/objects/companies")
        assert limited.status_code == 429 and limited.json()["errorType"] == "RATE_LIMIT"
        app.faults.error_next = 1
        failed = api.get("/crm/v3/objects/companies")
        assert failed.status_code == 500 and failed.json()["status"] == "error"
        assert app.requests.count("GET", "/crm/v3/objects/<obj>") == 2
    finally:
        stop_soon(running)


def test_user_edits_bump_modified_and_admin_endpoint(hs: tuple[HubSpotSandbox, Any]) -> None:
    app, running = hs
    made = requests.post(running.base_url + "/__sandbox/records", json={
        "op": "create", "object": "companies", "properties": {"name": "Newco"}}, timeout=5)
    rid = made.json()["id"]
    first = app.account.get("companies", rid)["hs_lastmodifieddate"]
    requests.post(running.base_url + "/__sandbox/records", json={
        "op": "update", "object": "companies", "id": rid,
        "properties": {"name": "Newco AG"}}, timeout=5)
    edited = app.account.get("companies", rid)
    assert edited["name"] == "Newco AG" and (edited["hs_lastmodifieddate"] or "") >= (first or "")


def test_fixture_loading() -> None:
    app = HubSpotSandbox(search_per_second=None)
    app.load_fixture({
        "owners": [{"id": "101", "email": "o@x.com", "firstName": "O", "lastName": "X"}],
        "properties": {"companies": [{"name": "tier", "type": "enumeration",
                                      "options": [{"label": "Gold", "value": "gold"}]}]},
        "companies": [{"id": "201", "properties": {"name": "Acme", "tier": "gold"},
                       "updatedAt": "2026-02-01T00:00:00Z"},
                      {"id": "202", "properties": {"name": "Gone", "legacy_code": "x"},
                       "archivedAt": "2026-03-01T00:00:00Z"}],
        "deals": [{"id": "301", "properties": {"dealname": "D"}, "companies": ["201"]}],
    })
    assert app.account.get("companies", "201")["tier"] == "gold"
    assert app.account.get("companies", "201")["hs_lastmodifieddate"] == "2026-02-01T00:00:00.000Z"
    assert app.account.objects["companies"].archived_ids == [202]
    assert app.account.deal_companies[301] == [201]
    assert "legacy_code" in app.account.objects["companies"].properties
