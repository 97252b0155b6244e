"""The HubSpot sandbox's batch, metadata, association, rate-limit and fixture behaviour,
driven with plain requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.core import Faults, Rejection
from sandbox.hubspot import HubSpotSandbox
from sandbox.serving import RunningSandbox, serve
from tests.sandbox.test_hubspot import Client, seeded_sandbox, stop_soon


@pytest.fixture
def hs() -> Iterator[tuple[HubSpotSandbox, RunningSandbox]]:
    yield from seeded_sandbox()


@pytest.fixture
def api(hs: tuple[HubSpotSandbox, RunningSandbox]) -> Client:
    return Client(hs[1], hs[0].token)


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
