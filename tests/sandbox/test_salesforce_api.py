"""Salesforce sandbox: OAuth, describe, getDeleted, writes, seeding, via plain requests."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.core import Faults, Rejection
from sandbox.salesforce import SalesforceSandbox
from sandbox.world import CrmSeed, SeedAccount, SeedDeal, SeedUser
from tests.sandbox.salesforce_support import Served, start


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sf-tls")


@pytest.fixture
def sf(tls_dir: Path) -> Iterator[Served]:
    served = start(tls_dir)
    yield served
    served.running.stop()


def _assertion(creds: dict[str, Any], **claims: Any) -> str:
    payload = {"iss": creds["consumer_key"], "sub": creds["username"],
               "aud": "https://login.salesforce.com", "exp": int(time.time()) + 180, **claims}
    key = claims.pop("key", None) or creds["private_key_pem"]
    payload.pop("key", None)
    return jwt.encode(payload, key, algorithm="RS256")


def _token(sf: Served, data: dict[str, str], **kwargs: Any) -> Any:
    return sf.http.post(sf.running.base_url + "/services/oauth2/token", data=data, **kwargs)


JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_jwt_bearer_flow_issues_a_usable_token(sf: Served) -> None:
    resp = _token(sf, {"grant_type": JWT_GRANT, "assertion": _assertion(sf.creds)})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) >= {"access_token", "instance_url", "token_type", "issued_at",
                         "signature", "id"}
    assert body["instance_url"] == sf.running.base_url and body["token_type"] == "Bearer"
    ok = sf.http.get(sf.data + "/query", params={"q": "SELECT Id FROM User"},
                     headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"aud": "https://evil.example"}, "invalid_grant", "audience is invalid"),
        ({"exp": int(time.time()) - 60}, "invalid_grant", "expired authorization code"),
        ({"sub": "someone@else.example"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"iss": "3MVGunknown"}, "invalid_client_id", "client identifier invalid"),
    ],
)
def test_jwt_claims_are_checked(sf: Served, claims: dict[str, Any], error: str,
                                description: str) -> None:
    resp = _token(sf, {"grant_type": JWT_GRANT, "assertion": _assertion(sf.creds, **claims)})
    assert resp.status_code == 400
    assert resp.json() == {"error": error, "error_description": description}


def test_jwt_signed_by_another_key_is_an_invalid_assertion(sf: Served) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    resp = _token(sf, {"grant_type": JWT_GRANT, "assertion": _assertion(sf.creds, key=other)})
    assert resp.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_client_credentials_by_basic_header_and_by_form(sf: Served) -> None:
    creds = sf.creds
    basic = base64.b64encode(f"{creds['consumer_key']}:{creds['consumer_secret']}".encode())
    by_header = _token(sf, {"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic.decode()}"})
    assert by_header.status_code == 200 and by_header.json()["access_token"]
    by_form = _token(sf, {"grant_type": "client_credentials", "client_id": creds["consumer_key"],
                          "client_secret": creds["consumer_secret"]})
    assert by_form.status_code == 200
    wrong = _token(sf, {"grant_type": "client_credentials", "client_id": creds["consumer_key"],
                        "client_secret": "nope"})
    assert wrong.json() == {"error": "invalid_client",
                            "error_description": "invalid client credentials"}


def test_expired_tokens_answer_invalid_session_id_and_new_ones_work(sf: Served) -> None:
    old = sf.creds["session_id"]
    sf.app.faults.expire_tokens()
    expired = sf.query("SELECT Id FROM User")
    assert expired.status_code == 401 and expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    time.sleep(0.01)
    fresh = _token(sf, {"grant_type": JWT_GRANT, "assertion": _assertion(sf.creds)}).json()
    assert fresh["access_token"] != old
    ok = sf.http.get(sf.data + "/query", params={"q": "SELECT Id FROM User"},
                     headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert ok.status_code == 200


def test_describe_lists_fields_with_salesforce_attributes(sf: Served) -> None:
    body = sf.get("/sobjects/Opportunity/describe").json()
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["StageName"]["type"] == "picklist"
    assert "Closed Won" in [p["value"] for p in fields["StageName"]["picklistValues"]]
    partner = fields["Partner_Account__c"]
    assert partner["custom"] is True and partner["referenceTo"] == ["Account"]
    assert partner["relationshipName"] == "Partner_Account__r"
    assert fields["SystemModstamp"]["updateable"] is False
    assert fields["Channel_Conflict__c"]["nillable"] is False
    for key in ("name", "label", "type", "custom", "updateable", "nillable", "picklistValues",
                "referenceTo", "relationshipName"):
        assert key in fields["Name"]
    assert sf.get("/sobjects/Lead/describe").status_code == 404


def test_get_deleted_window_and_purge(sf: Served) -> None:
    org = sf.app.org
    now = datetime.now(UTC)
    old = org.create("Account", {"Name": "Old"}, at=now - timedelta(days=20))
    org.delete("Account", old, at=now - timedelta(days=20))
    recent = org.create("Account", {"Name": "Recent"})
    org.delete("Account", recent)
    start = (now - timedelta(days=1)).isoformat()
    end = (now + timedelta(minutes=5)).isoformat()
    body = sf.get("/sobjects/Account/deleted/", params={"start": start, "end": end}).json()
    assert [r["id"] for r in body["deletedRecords"]] == [recent]
    # the 20-day-old delete fell out of the 15-day bin: earliestDateAvailable moved past it
    assert body["earliestDateAvailable"] > (now - timedelta(days=21)).strftime("%Y-%m-%d")
    assert body["latestDateCovered"] <= end.replace("+00:00", "")[:16] + ":00.000+0000"
    gone = sf.query("SELECT Id FROM Account WHERE Id = '" + old + "'", all_rows=True).json()
    assert gone["totalSize"] == 0
    short = sf.get("/sobjects/Account/deleted/", params={"start": start, "end": start})
    assert short.status_code == 400 and short.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_collections_update_partial_failure_and_all_or_none(sf: Served) -> None:
    org = sf.app.org
    ids = [org.create("Opportunity", {"Name": f"D{i}", "StageName": "Prospecting",
                                      "CloseDate": "2026-09-30"}) for i in range(3)]
    sf.app.faults.rejections.append(Rejection(object="Opportunity", ids=[ids[1]],
                                              message="Registration is locked"))
    stamp_before = org.get("Opportunity", ids[0])["SystemModstamp"]  # type: ignore[index]  # exists
    time.sleep(1.05)  # SystemModstamp has whole seconds
    records = [{"attributes": {"type": "Opportunity"}, "id": i, "Channel_Conflict__c": True}
               for i in ids] + [{"attributes": {"type": "Opportunity"}, "id": ids[2],
                                 "Registration_Status__c": "Bogus"}]
    resp = sf.patch("/composite/sobjects", {"allOrNone": False, "records": records})
    assert resp.status_code == 200
    results = resp.json()
    assert [r["success"] for r in results] == [True, False, True, False]
    assert results[0]["id"] == ids[0]
    assert results[1]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[3]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    row = org.get("Opportunity", ids[0])
    assert row is not None and row["Channel_Conflict__c"] is True
    assert row["SystemModstamp"] > stamp_before
    rolled = sf.patch("/composite/sobjects", {"allOrNone": True, "records": [
        {"attributes": {"type": "Opportunity"}, "id": ids[0], "Routed_To__c": "cm@acme"},
        {"attributes": {"type": "Opportunity"}, "id": ids[1], "Routed_To__c": "cm@acme"}]})
    codes = [r["errors"][0]["statusCode"] for r in rolled.json()]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert org.get("Opportunity", ids[0])["Routed_To__c"] is None  # type: ignore[index]  # exists
    too_many = sf.patch("/composite/sobjects", {"allOrNone": False, "records": records * 51})
    assert too_many.status_code == 400
    assert too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_single_record_patch_is_204_and_errors_use_error_code(sf: Served) -> None:
    acc = sf.app.org.create("Account", {"Name": "Patch Me"})
    ok = sf.patch(f"/sobjects/Account/{acc}", {"Channel_Owner__c": "DIST-1"})
    assert ok.status_code == 204 and ok.content == b""
    bad = sf.patch(f"/sobjects/Account/{acc}", {"SystemModstamp": "2026-01-01T00:00:00Z"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    missing = sf.patch("/sobjects/Account/001Hs000000zzzzIAA", {"Name": "x"})
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"


def test_from_seed_creates_native_records_and_custom_fields(tls_dir: Path) -> None:
    t = datetime(2026, 2, 1, tzinfo=UTC)
    crm = CrmSeed(
        connection="acme-sf", vendor="salesforce", role="internal", distributor_id=None,
        users=[SeedUser("u1", "Ann Lee", "ann@acme.example")],
        accounts=[
            SeedAccount("a1", "Acme GmbH", "acme.de", "DE", duns="123456789", vat_id="DE1",
                        owner_user="u1", channel_owner="DIST-2", created_at=t, modified_at=t),
            SeedAccount("p1", "Nordic Distribution AB", None, "SE", partner_id="DIST-2"),
        ],
        deals=[SeedDeal("d1", "a1", "Acme pumps", Decimal("12000"), "EUR", "won",
                        t.date(), t, t + timedelta(days=1), registered_by="DIST-2",
                        registered_at=t, registration_status="active")],
    )
    app = SalesforceSandbox.from_seed(crm, faults=Faults())
    acc = app.org.get("Account", app.seed_ids["account:a1"])
    assert acc is not None
    assert (acc["BillingCountry"], acc["DunsNumber"], acc["VAT_Number__c"],
            acc["Channel_Owner__c"]) == ("Germany", "123456789", "DE1", "DIST-2")
    opp = app.org.get("Opportunity", app.seed_ids["deal:d1"])
    assert opp is not None
    assert (opp["StageName"], opp["IsWon"], opp["Registration_Status__c"]) == (
        "Closed Won", True, "Active")
    partner = app.org.get("Account", opp["Partner_Account__c"])
    assert partner is not None and partner["Distributor_Id__c"] == "DIST-2"
    assert opp["SystemModstamp"] == "2026-02-02T00:00:00.000+0000"


def test_load_fixture_resolves_references_and_validates(tls_dir: Path) -> None:
    app = SalesforceSandbox()
    keys = app.load_fixture({
        "Account": [{"key": "a", "Name": "Fixture Co", "SystemModstamp": "2026-01-02T03:04:05Z"}],
        "Opportunity": [{"key": "o", "AccountId": "@a", "Name": "F deal",
                         "StageName": "Prospecting", "CloseDate": "2026-05-01",
                         "IsDeleted": True}],
    })
    opp = app.org.get("Opportunity", keys["o"])
    assert opp is not None and opp["AccountId"] == keys["a"] and opp["IsDeleted"] is True
    acc = app.org.get("Account", keys["a"])
    assert acc is not None and acc["SystemModstamp"] == "2026-01-02T03:04:05.000+0000"
    with pytest.raises(ValueError, match=r"fixture Account\[0\].*No such column"):
        app.load_fixture({"Account": [{"Name": "x", "Nope__c": 1}]})


def test_version_list_and_limits(sf: Served) -> None:
    versions = sf.http.get(sf.running.base_url + "/services/data/").json()
    assert {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"} in versions
    assert versions[-1]["label"] == "Winter '27"
    limits = sf.get("/limits").json()
    assert limits["DailyApiRequests"]["Max"] == 100_000
    assert limits["DailyApiRequests"]["Remaining"] < 100_000
    assert sf.http.get(sf.running.base_url + "/services/data/v99.0/limits",
                       headers=sf.headers()).status_code == 404


def test_writes_bump_system_modstamp_and_last_modified(sf: Served) -> None:
    org = sf.app.org
    acc = org.create("Account", {"Name": "Stamp Co"}, at=datetime(2026, 1, 1, tzinfo=UTC))
    resp = sf.patch(f"/sobjects/Account/{acc}", {"Channel_Conflict__c": True})
    assert resp.status_code == 204
    row = org.get("Account", acc)
    assert row is not None
    assert row["SystemModstamp"] > "2026-01-01T00:00:00.000+0000"
    assert row["LastModifiedDate"] == row["SystemModstamp"]
    stale = sf.patch(f"/sobjects/Account/{acc}", {"Name": "x"},
                     headers={"If-Unmodified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"})
    assert stale.status_code == 412


def test_deleting_an_account_deletes_its_opportunities(sf: Served) -> None:
    org = sf.app.org
    acc = org.create("Account", {"Name": "Parent Co"})
    opp = org.create("Opportunity", {"Name": "Child", "AccountId": acc, "StageName": "Prospecting",
                                     "CloseDate": "2026-10-01"})
    resp = sf.http.delete(f"{sf.data}/sobjects/Account/{acc}", headers=sf.headers())
    assert resp.status_code == 204
    rows = sf.query(f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{opp}'",
                    all_rows=True).json()["records"]
    assert rows[0]["IsDeleted"] is True
    assert sf.get(f"/sobjects/Opportunity/{opp}").json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_admin_hooks_edit_records_as_a_user(sf: Served) -> None:
    admin = sf.running.base_url + "/__sandbox"
    created = sf.http.post(admin + "/records/Account", json={"Name": "Admin Co"})
    assert created.status_code == 201
    acc = created.json()["id"]
    assert sf.http.patch(f"{admin}/records/Account/{acc}",
                         json={"Channel_Owner__c": "DIST-3"}).status_code == 204
    assert sf.app.org.get("Account", acc)["Channel_Owner__c"] == "DIST-3"  # type: ignore[index]  # exists
    assert sf.http.delete(f"{admin}/records/Account/{acc}").status_code == 204
    assert sf.app.org.get("Account", acc)["IsDeleted"] is True  # type: ignore[index]  # exists
    bad = sf.http.post(admin + "/records/Account", json={"Nope__c": 1})
    assert bad.status_code == 400 and "Nope__c" in bad.json()["error"]
    before = sf.app.requests.count()
    sf.http.post(admin + "/purge")
    assert sf.app.requests.count() == before  # admin calls are never counted
    assert sf.app.org.get("Account", acc) is None


def test_jwt_verified_against_a_configured_certificate(tls_dir: Path) -> None:
    own = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = own.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    served = start(tls_dir, jwt_certificate=public_pem)
    try:
        creds = served.creds
        assert creds["private_key_pem"] == ""
        own_pem = own.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        ok = _token(served, {"grant_type": JWT_GRANT,
                             "assertion": _assertion(creds, key=own_pem)})
        assert ok.status_code == 200 and ok.json()["access_token"]
    finally:
        served.running.stop()
