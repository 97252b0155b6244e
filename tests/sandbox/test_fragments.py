"""Cached per-record JSON: pages are identical to a fresh rendering, unchanged records are not
encoded again, and every change (the record, a parent it shows, the schema) is served."""

from __future__ import annotations

from typing import Any

import orjson

from sandbox.fragments import ENTRY_OVERHEAD, FragmentCache, page_body
from tests.sandbox.conftest import DV_API, SF_DATA, SandboxStarter, VendorClient


def test_page_body_is_the_json_of_the_whole_page() -> None:
    rows = [{"id": 1, "name": "Ä & b"}, {"id": 2, "name": None}]
    fragments = [orjson.dumps(r) for r in rows]
    for head, tail in (({}, None), ({"total": 2}, {"paging": {"next": {"after": "3"}}})):
        body = page_body(head, "results", fragments, tail)
        assert orjson.loads(body) == {**head, "results": rows, **(tail or {})}
        assert list(orjson.loads(body)) == [*head, "results", *(tail or {})]
    assert orjson.loads(page_body({"a": 1}, "value", [])) == {"a": 1, "value": []}


def test_cache_reuses_by_version_or_identity_and_keeps_few_projections() -> None:
    cache = FragmentCache(projections=2)
    rows = [{"id": 1, "v": 1}, {"id": 2, "v": 1}]

    def by_version() -> list[bytes]:
        return cache.fragments("p", rows, lambda r: r["id"], dict, lambda r: r["v"])

    first = by_version()
    assert cache.encoded == 2 and by_version() == first and cache.encoded == 2
    rows[0] = {"id": 1, "v": 2}
    assert orjson.loads(by_version()[0]) == {"id": 1, "v": 2} and cache.encoded == 3
    same = rows[1]
    cache.fragments("q", [same], lambda r: r["id"], dict)
    cache.fragments("q", [same], lambda r: r["id"], dict)
    assert cache.encoded == 4  # the same object: reused
    cache.fragments("q", [dict(same)], lambda r: r["id"], dict)
    assert cache.encoded == 5  # an equal but new object (a replaced row): encoded again
    cache.fragments("r", rows, lambda r: r["id"], dict)
    by_version()  # "p" was the least recent of three projections: dropped
    assert cache.encoded == 5 + 2 + 2


def _sf_rows(box: VendorClient, soql: str) -> list[dict[str, Any]]:
    answer = box.call("GET", f"{SF_DATA}/query", params={"q": soql})
    assert answer.status_code == 200
    return list(answer.json()["records"])


def test_salesforce_pages_follow_record_and_parent_changes(start_sandbox: SandboxStarter) -> None:
    box = start_sandbox("salesforce")
    cache = box.app.engine.fragments
    plain = "SELECT Id, Name FROM Account ORDER BY Name"
    before = _sf_rows(box, plain)
    encoded = cache.encoded
    assert _sf_rows(box, plain) == before and cache.encoded == encoded
    acme1 = next(r["Id"] for r in before if r["Name"] == "Acme 1 GmbH")
    assert box.call("PATCH", f"{SF_DATA}/sobjects/Account/{acme1}",
                    json={"Name": "Acme One AG"}).status_code == 204
    assert "Acme One AG" in [r["Name"] for r in _sf_rows(box, plain)]
    assert cache.encoded == encoded + 1  # only the changed row
    with_parent = f"SELECT Id, Name, Account.Name FROM Opportunity WHERE AccountId = '{acme1}'"
    assert _sf_rows(box, with_parent)[0]["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v66.0/sobjects/Account/{acme1}"},
        "Name": "Acme One AG"}
    box.app.org.update("Account", acme1, {"Name": "Acme Uno SpA"})  # as a CRM user
    assert _sf_rows(box, with_parent)[0]["Account"]["Name"] == "Acme Uno SpA"


def test_hubspot_pages_follow_record_and_schema_changes(start_sandbox: SandboxStarter) -> None:
    box = start_sandbox("hubspot")
    cache = box.app.fragments
    path = "/crm/v3/objects/companies?limit=10&properties=name,country"
    first = box.call("GET", path).json()
    encoded = cache.encoded
    assert box.call("GET", path).json() == first and cache.encoded == encoded
    target = first["results"][0]["id"]
    assert box.call("PATCH", f"/crm/v3/objects/companies/{target}",
                    json={"properties": {"name": "Acme One AG"}}).status_code == 200
    after = box.call("GET", path).json()["results"]
    assert after[0]["properties"]["name"] == "Acme One AG"
    assert after[0]["updatedAt"] > first["results"][0]["updatedAt"]
    assert cache.encoded == encoded + 1
    search = box.call("POST", "/crm/v3/objects/companies/search",
                      json={"properties": ["name", "country"], "limit": 10}).json()
    assert {r["properties"]["name"] for r in search["results"]} == {
        r["properties"]["name"] for r in after}
    box.app.account.archive_property("companies", "country")
    assert all("country" not in r["properties"] for r in box.call("GET", path).json()["results"])


def test_dataverse_pages_follow_row_and_lookup_changes(start_sandbox: SandboxStarter) -> None:
    box = start_sandbox("dynamics")
    cache = box.app.fragments
    accounts = f"{DV_API}/accounts?$select=name&$orderby=name"
    first = box.call("GET", accounts).json()["value"]
    encoded = cache.encoded
    assert box.call("GET", accounts).json()["value"] == first and cache.encoded == encoded
    target = first[0]["accountid"]
    assert box.call("PATCH", f"{DV_API}/accounts({target})", json={"name": "Acme One AG"},
                    headers={"If-Match": "*"}).status_code == 204
    renamed = box.call("GET", accounts).json()["value"]
    assert [r["name"] for r in renamed][-1] == "Acme One AG"
    assert renamed[-1]["@odata.etag"] != first[0]["@odata.etag"]
    assert cache.encoded == encoded + 1
    annotated = {"Prefer": 'odata.include-annotations="*"'}
    deals = f"{DV_API}/opportunities?$select=name,_parentaccountid_value"
    label = "_parentaccountid_value@OData.Community.Display.V1.FormattedValue"
    rows = box.call("GET", deals, headers=annotated).json()["value"]
    assert {r[label] for r in rows} == {"Acme One AG", first[1]["name"]}
    box.call("PATCH", f"{DV_API}/accounts({target})", json={"name": "Acme Uno SpA"})
    rows = box.call("GET", deals, headers=annotated).json()["value"]
    assert "Acme Uno SpA" in {r[label] for r in rows}  # the deal row itself did not change
    box.app.corrupt_record("account", target, "name", "raw edit")
    assert "raw edit" in [r["name"] for r in box.call("GET", accounts).json()["value"]]


def test_page_memo_builds_once_per_slice_and_generation() -> None:
    cache = FragmentCache(pages=2)
    cache.entries("p")
    built: list[tuple[int, str]] = []

    def page(generation: int, key: str) -> list[bytes]:
        def build() -> list[bytes]:
            built.append((generation, key))
            return [key.encode()]
        return cache.page("p", generation, key, build)

    assert page(1, "a") == [b"a"] and page(1, "a") == [b"a"] and built == [(1, "a")]
    page(1, "b")
    page(1, "c")  # over the page limit: served, not kept
    page(1, "c")
    page(2, "a")  # a new generation forgets the old pages
    page(1, "b")
    assert built == [(1, "a"), (1, "b"), (1, "c"), (1, "c"), (2, "a"), (1, "b")]


def test_budget_caps_the_cache_and_evicts_older_projections_first() -> None:
    rows = [{"id": i, "text": "x" * 100} for i in range(10)]
    one_row = len(orjson.dumps(rows[0])) + ENTRY_OVERHEAD
    cache = FragmentCache(budget_bytes=one_row * 6)

    def read(projection: str) -> list[bytes]:
        return cache.fragments(projection, rows, lambda r: r["id"], dict, lambda r: 1)

    assert [orjson.loads(b) for b in read("p")] == rows
    assert cache.encoded == 10 and cache.cached_bytes <= one_row * 6
    assert [orjson.loads(b) for b in read("p")] == rows
    assert cache.encoded == 14  # six cached, four encoded again
    read("q")  # a newer projection takes the room of the older one
    assert cache.cached_bytes <= one_row * 6
    assert cache.encoded == 24 and len(cache.entries("q")) == 6


def _rendered(box: VendorClient, select: list[str] | None) -> list[Any]:
    """What rendering each account row on its own gives, in the page's order."""
    table = box.app.store.tables["account"]
    columns = select or list(table.definition.by_prop())
    query = f"?$select={','.join(select)}" if select else ""
    page = box.call("GET", f"{DV_API}/accounts{query}").json()["value"]
    expected = [box.app.render(table, table.rows[row["accountid"]],
                               [*columns, *(["accountid"] if "accountid" not in columns else [])],
                               None) for row in page]
    assert page == expected
    return list(page)


def test_dataverse_rows_encoded_at_write_time_page_as_rendering_them(
        start_sandbox: SandboxStarter) -> None:
    box = start_sandbox("dynamics")
    app = box.app
    with app.lock:
        made = app.store.insert("account", {
            "name": 'Quote " back\\slash \u00e4\u20ac \U0001f600 </script>', "statecode": 1,
            "new_channelconflict": True, "accountnumber": "", "versionnumber": None})
    picked = ["new_channelconflict", "name", "statecode", "new_partnerid"]
    every = _rendered(box, None)
    assert any(r["accountid"] == made["accountid"] and r["new_partnerid"] is None for r in every)
    _rendered(box, picked)
    app.corrupt_record("account", made["accountid"], "statecode", 7.25)  # outside the row API
    assert any(r.get("statecode") == 7.25 for r in _rendered(box, picked))
    app.drop_attribute("account", "new_vatid")  # a schema change: rows are encoded again
    assert all("new_vatid" not in r for r in _rendered(box, None))
    with app.lock:
        app.store.update("account", made["accountid"], {"name": "Renamed"})
    assert "Renamed" in [r["name"] for r in _rendered(box, picked)]
    with app.lock:  # a change set that fails puts the old row back, with its wire form
        app.store.begin()
        app.store.update("account", made["accountid"], {"name": "Rolled back"})
        app.store.rollback()
    assert "Renamed" in [r["name"] for r in _rendered(box, picked)]
