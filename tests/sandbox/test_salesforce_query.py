"""Salesforce sandbox: SOQL query/queryAll, paging, errors and limits over HTTPS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceRefusedRequest

from tests.sandbox.salesforce_support import VERSION, Served, start

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sf-tls")


@pytest.fixture(scope="module")
def sf(tls_dir: Path) -> Iterator[Served]:
    served = start(tls_dir)
    org = served.app.org
    partner = org.create("Account", {"Name": "Nordic Distribution AB", "IsPartner": True,
                                     "Distributor_Id__c": "DIST-7"}, at=T0)
    for i in range(450):
        acc = org.create("Account", {"Name": f"Customer {i:03d}", "Website": f"c{i}.example",
                                     "BillingCountry": "Germany" if i % 2 else "France"},
                         at=T0 + timedelta(seconds=i // 3))
        if i < 5:
            org.create("Opportunity", {"Name": f"Deal {i}", "AccountId": acc,
                                       "StageName": "Prospecting", "CloseDate": "2026-06-30",
                                       "Amount": 1000 * i, "Partner_Account__c": partner},
                       at=T0)
    yield served
    served.running.stop()


def test_query_pages_with_next_records_url_and_default_batch(sf: Served) -> None:
    first = sf.query("SELECT Id, Name FROM Account WHERE Name LIKE 'Customer%'",
                     headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert first["totalSize"] == 450 and first["done"] is False
    assert len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith(f"/services/data/v{VERSION}/query/01g")
    rec = first["records"][0]
    assert rec["attributes"] == {
        "type": "Account", "url": f"/services/data/v{VERSION}/sobjects/Account/{rec['Id']}"}
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        page = sf.http.get(sf.running.base_url + page["nextRecordsUrl"],
                           headers=sf.headers()).json()
        seen += [r["Id"] for r in page["records"]]
    assert len(seen) == len(set(seen)) == 450
    default = sf.query("SELECT Id FROM Account").json()
    assert default["done"] is True and len(default["records"]) == 451  # 2000 per batch


def test_batch_size_header_is_clamped_to_200_and_2000(sf: Served) -> None:
    small = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(small.json()["records"]) == 200


def test_where_order_by_limit_and_relationship_fields(sf: Served) -> None:
    soql = ("SELECT Id, Name, Account.Name, Partner_Account__r.Distributor_Id__c "
            "FROM Opportunity WHERE (Amount >= 2000 AND Amount < 4000) OR Name = 'deal 0' "
            "ORDER BY Amount DESC, Id ASC LIMIT 10")
    body = sf.query(soql).json()
    assert [r["Name"] for r in body["records"]] == ["Deal 3", "Deal 2", "Deal 0"]
    rec = body["records"][0]
    assert rec["Account"]["Name"] == "Customer 003"
    assert rec["Account"]["attributes"]["type"] == "Account"
    assert rec["Partner_Account__r"]["Distributor_Id__c"] == "DIST-7"


def test_datetime_literals_are_unquoted_utc(sf: Served) -> None:
    soql = ("SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= "
            "2026-03-01T12:01:00Z AND SystemModstamp < 2026-03-01T13:02:00.000+01:00 "
            "ORDER BY SystemModstamp, Id")
    records = sf.query(soql).json()["records"]
    assert len(records) == 3 * 60
    assert records[0]["SystemModstamp"] == "2026-03-01T12:01:00.000+0000"
    quoted = sf.query("SELECT Id FROM Account WHERE SystemModstamp > '2026-03-01T12:00:00Z'")
    assert quoted.status_code == 400
    assert quoted.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "must be of type dateTime" in quoted.json()[0]["message"]


def test_strings_booleans_ids_null_in_and_escaping(sf: Served) -> None:
    org = sf.app.org
    tricky = org.create("Account", {"Name": "O'Brien \\ Sons", "BillingCountry": "Ireland"})
    body = sf.query("SELECT Id FROM Account WHERE Name = 'O\\'Brien \\\\ Sons'").json()
    assert [r["Id"] for r in body["records"]] == [tricky]
    partners = sf.query("SELECT Id FROM Account WHERE IsPartner = true").json()
    assert partners["totalSize"] == 1
    by_id = sf.query(f"SELECT Id FROM Account WHERE Id IN ('{tricky[:15]}', '{tricky}')").json()
    assert by_id["totalSize"] == 1
    nulls = sf.query("SELECT Id FROM Account WHERE Website = null AND IsPartner = false").json()
    assert [r["Id"] for r in nulls["records"]] == [tricky]
    bad_id = sf.query("SELECT Id FROM Account WHERE Id = 'nope'")
    assert bad_id.status_code == 400
    assert bad_id.json()[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"
    org.delete("Account", tricky)


def test_unknown_field_and_malformed_query_errors(sf: Served) -> None:
    unknown = sf.query("SELECT Id, Channel_Confict__c FROM Account")
    assert unknown.status_code == 400
    err = unknown.json()
    assert isinstance(err, list) and err[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Channel_Confict__c' on entity 'Account'" in err[0]["message"]
    assert "ERROR at Row:1:Column:12" in err[0]["message"]
    bad_rel = sf.query("SELECT Partner__r.Name FROM Opportunity")
    assert bad_rel.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "Didn't understand relationship 'Partner__r'" in bad_rel.json()[0]["message"]
    for soql in ("SELECT Id Account", "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' "
                 "OR Name = 'c'", "SELECT Id FROM Account WHERE", "SELECT FROM Account"):
        resp = sf.query(soql)
        assert resp.status_code == 400, soql
        assert resp.json()[0]["errorCode"] == "MALFORMED_QUERY", soql
    bad_type = sf.query("SELECT Id FROM Lead")
    assert bad_type.json()[0]["errorCode"] == "INVALID_TYPE"


def test_query_hides_deleted_rows_and_query_all_shows_them(sf: Served) -> None:
    org = sf.app.org
    gone = org.create("Account", {"Name": "Short-lived Ltd"})
    org.delete("Account", gone)
    soql = "SELECT Id, IsDeleted FROM Account WHERE Name = 'Short-lived Ltd'"
    assert sf.query(soql).json()["totalSize"] == 0
    rows = sf.query(soql, all_rows=True).json()["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, True)]


def test_every_rest_response_carries_limit_info(sf: Served) -> None:
    ok = sf.query("SELECT Id FROM User")
    bad = sf.query("SELECT Nope FROM User")
    for resp in (ok, bad, sf.get("/sobjects/Account/describe")):
        used, limit = resp.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/")
        assert int(used) > 0 and int(limit) == 100_000


def test_expired_or_unknown_session_is_401_invalid_session_id(sf: Served) -> None:
    unknown = sf.http.get(sf.data + "/query", params={"q": "SELECT Id FROM User"},
                          headers={"Authorization": "Bearer 00Dxx!nope"})
    assert unknown.status_code == 401
    assert unknown.json() == [{"message": "Session expired or invalid",
                               "errorCode": "INVALID_SESSION_ID"}]


def test_simple_salesforce_query_all_iter_over_https_with_env_bundle(
    sf: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert os.environ["REQUESTS_CA_BUNDLE"]
    creds = sf.creds
    plain = requests.Session()
    plain.verify = creds["ca_file"]  # trust_env on: the environment's bundle wins
    with pytest.raises(requests.exceptions.SSLError):
        Salesforce(session_id=creds["session_id"], instance_url=creds["instance_url"],
                   version=VERSION, session=plain).query("SELECT Id FROM User")
    pinned = requests.Session()
    pinned.trust_env = False
    pinned.verify = creds["ca_file"]
    client = Salesforce(session_id=creds["session_id"], instance_url=creds["instance_url"],
                        version=VERSION, session=pinned)
    before = sf.app.requests.count("GET", "/query")
    ids = [r["Id"] for r in client.query_all_iter(
        "SELECT Id FROM Account ORDER BY Id", headers={"Sforce-Query-Options": "batchSize=200"})]
    assert len(ids) == len(set(ids)) and len(ids) >= 451
    assert sf.app.requests.count("GET", "/query") - before == -(-len(ids) // 200)
    assert client.api_usage["api-usage"].total == 100_000


def test_daily_limit_answers_403_request_limit_exceeded(tls_dir: Path) -> None:
    served = start(tls_dir, daily_limit=3)
    try:
        codes = [served.query("SELECT Id FROM User").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 403]
        over = served.query("SELECT Id FROM User")
        assert over.json() == [{"message": "TotalRequests Limit exceeded.",
                                "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        assert "Retry-After" not in over.headers
        assert over.headers["Sforce-Limit-Info"] == "api-usage=3/3"
        client = Salesforce(session_id=served.creds["session_id"],
                            instance_url=served.creds["instance_url"], version=VERSION,
                            session=served.http)
        with pytest.raises(SalesforceRefusedRequest):
            client.query("SELECT Id FROM User")
    finally:
        served.running.stop()


def test_forced_rate_limit_is_the_concurrent_request_limit(sf: Served) -> None:
    sf.app.faults.rate_limit_next = 1
    limited = sf.query("SELECT Id FROM User")
    assert limited.status_code == 403
    assert limited.json() == [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                               "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert sf.query("SELECT Id FROM User").status_code == 200


def test_order_by_plain_fields_with_and_without_nulls(sf: Served) -> None:
    accounts = [r for r in sf.app.org.tables["Account"].values() if not r["IsDeleted"]]
    by_country = sorted(sorted(accounts, key=lambda r: r["Name"].lower()),
                        key=lambda r: r["BillingCountry"] or "", reverse=True)
    body = sf.query("SELECT Id FROM Account WHERE BillingCountry != null "
                    "ORDER BY BillingCountry DESC, Name").json()
    assert [r["Id"] for r in body["records"]] == [
        r["Id"] for r in by_country if r["BillingCountry"] is not None]
    ranked = sorted(sorted(accounts, key=lambda r: r["Id"]),  # nulls last, then by id
                    key=lambda r: (r["Distributor_Id__c"] is None, r["Distributor_Id__c"] or ""))
    body = sf.query("SELECT Id FROM Account ORDER BY Distributor_Id__c NULLS LAST, Id").json()
    assert [r["Id"] for r in body["records"]] == [r["Id"] for r in ranked]
    assert body["records"][0]["Id"] == ranked[0]["Id"] and ranked[0]["Distributor_Id__c"]
