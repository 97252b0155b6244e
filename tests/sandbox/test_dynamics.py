"""The Dataverse sandbox against documented Entra and Web API behaviour: auth through msal,
reads, paging, filters, annotations, change tracking, metadata and service protection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msal
import pytest
import requests

from connectors.http import make_session
from sandbox.dynamics import DynamicsApp, make_certificate
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import TlsFiles, ensure_tls
from sandbox.world import CrmSeed, SeedAccount, SeedDeal, SeedUser

Started = tuple[DynamicsApp, requests.Session, str]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("dynamics-tls"))


@pytest.fixture(scope="session")
def certificate() -> tuple[str, str]:
    return make_certificate()


@pytest.fixture
def start(tls: TlsFiles, certificate: tuple[str, str]) -> Iterator[Callable[..., Started]]:
    running: list[RunningSandbox] = []

    def _start(**options: Any) -> Started:
        app = DynamicsApp(certificate=certificate, **options)
        server = serve(app, tls=tls)
        running.append(server)
        app.base_url = server.base_url
        session = make_session(ca_bundle=str(tls.ca_file))
        token = msal_app(app, session).acquire_token_for_client(
            scopes=[app.credentials()["scope"]])["access_token"]
        session.headers.update({"Authorization": f"Bearer {token}", "OData-Version": "4.0",
                                "OData-MaxVersion": "4.0", "Accept": "application/json"})
        return app, session, app.credentials()["api_url"]

    yield _start
    for server in running:  # shutting down waits out a 0.5 s poll; let it happen meanwhile
        threading.Thread(target=server.stop, daemon=True).start()


@pytest.fixture
def env(start: Callable[..., Started]) -> Started:
    return start()


def msal_app(app: DynamicsApp, session: requests.Session, credential: Any = None
             ) -> msal.ConfidentialClientApplication:
    creds = app.credentials()
    return msal.ConfidentialClientApplication(
        creds["client_id"], authority=creds["authority"],
        client_credential=credential if credential is not None else creds["client_secret"],
        validate_authority=False, instance_discovery=False, http_client=session)


def token_for(app: DynamicsApp, tls: TlsFiles, credential: Any, scope: str | None = None
              ) -> dict[str, Any]:
    session = make_session(ca_bundle=str(tls.ca_file))
    result: dict[str, Any] = msal_app(app, session, credential).acquire_token_for_client(
        scopes=[scope or app.credentials()["scope"]])
    return result


# -- authority ---------------------------------------------------------------------------------

def test_msal_gets_a_token_with_a_client_secret(env: Started, tls: TlsFiles) -> None:
    app, _, _ = env
    result = token_for(app, tls, app.client_secret)
    assert result["token_type"] == "Bearer" and result["access_token"]


@pytest.mark.parametrize("form", ["sha1_thumbprint", "public_certificate"])
def test_msal_gets_a_token_with_a_certificate(env: Started, tls: TlsFiles, form: str) -> None:
    app, _, _ = env
    creds = app.credentials()
    credential = {"private_key": creds["private_key_pem"]}
    if form == "sha1_thumbprint":  # RS256 assertion with x5t
        credential["thumbprint"] = creds["thumbprint"]
    else:  # PS256 assertion with x5t#S256
        credential["public_certificate"] = creds["certificate_pem"]
    result = token_for(app, tls, credential)
    assert "access_token" in result, result.get("error_description")


def test_an_unregistered_certificate_is_refused(env: Started, tls: TlsFiles) -> None:
    app, _, _ = env
    other_cert, other_key = make_certificate("intruder")
    result = token_for(app, tls, {"private_key": other_key, "public_certificate": other_cert})
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]
    assert result["error_description"].startswith("AADSTS700027:")


def test_a_wrong_secret_answers_entra_error_shape(env: Started, tls: TlsFiles) -> None:
    app, _, _ = env
    result = token_for(app, tls, "wrong-secret")
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)


def test_the_scope_must_be_the_environment_default_scope(env: Started, tls: TlsFiles) -> None:
    app, _, _ = env
    other = token_for(app, tls, app.client_secret, "https://other.crm.dynamics.com/.default")
    assert other["error"] == "invalid_resource" and other["error_codes"] == [500011]
    no_default = token_for(app, tls, app.client_secret, app.credentials()["environment_url"]
                           + "/user_impersonation")
    assert no_default["error"] == "invalid_scope"


def test_unknown_client_and_raw_token_endpoint(env: Started) -> None:
    app, session, _ = env
    creds = app.credentials()
    discovery = session.get(f"{creds['authority']}/v2.0/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"] == f"{creds['authority']}/oauth2/v2.0/token"
    assert discovery["issuer"] == f"{creds['authority']}/v2.0"
    answer = session.post(discovery["token_endpoint"], data={
        "grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x",
        "scope": creds["scope"]})
    assert answer.status_code == 400
    assert answer.json()["error_codes"] == [700016]


def test_msal_requires_an_https_authority(env: Started) -> None:
    app, session, _ = env
    with pytest.raises(ValueError, match="https"):
        msal.ConfidentialClientApplication(
            app.client_id, authority=f"http://localhost:1/{app.tenant_id}",
            client_credential="x", validate_authority=False, instance_discovery=False,
            http_client=session)


def test_api_without_a_valid_token_is_401(env: Started) -> None:
    app, session, api = env
    answer = session.get(f"{api}accounts", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    app.faults.expire_tokens()
    assert session.get(f"{api}accounts").status_code == 401


# -- reads -------------------------------------------------------------------------------------

def _accounts(app: DynamicsApp, count: int, *, at: datetime | None = None, **fields: Any
              ) -> list[str]:
    return [app.create_record("account", {"name": f"Acct {i}", **fields}, modified_at=at)
            for i in range(count)]


def test_select_context_and_etag(env: Started) -> None:
    app, session, api = env
    [account_id] = _accounts(app, 1, websiteurl="https://contoso.com")
    body = session.get(f"{api}accounts?$select=name,websiteurl").json()
    assert body["@odata.context"].endswith("/$metadata#accounts(name,websiteurl,accountid)")
    [row] = body["value"]
    version = app.get_record("account", account_id)["versionnumber"]  # type: ignore[index]  # the row exists
    assert row == {"@odata.etag": f'W/"{version}"', "name": "Acct 0",
                   "websiteurl": "https://contoso.com", "accountid": account_id}


def test_unknown_select_column_is_a_dataverse_error(env: Started) -> None:
    _, session, api = env
    answer = session.get(f"{api}accounts?$select=name,nosuchcolumn")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"].startswith("0x")
    assert "nosuchcolumn" in error["message"]


def test_filter_subset(env: Started) -> None:
    app, session, api = env
    old = datetime(2026, 1, 1, tzinfo=UTC)
    new = datetime(2026, 6, 1, tzinfo=UTC)
    a = app.create_record("account", {"name": "O'Brien Ltd", "websiteurl": None}, modified_at=old)
    b = app.create_record("account", {"name": "Beta", "websiteurl": "beta.io"}, modified_at=new)
    c = app.create_record("account", {"name": "Gamma", "websiteurl": "g.io"}, modified_at=new)

    def ids(expr: str) -> set[str]:
        answer = session.get(f"{api}accounts", params={"$select": "name", "$filter": expr})
        assert answer.status_code == 200, answer.text
        return {r["accountid"] for r in answer.json()["value"]}

    assert ids("modifiedon ge 2026-03-01T00:00:00Z") == {b, c}
    assert ids("modifiedon lt 2026-03-01T00:00:00Z") == {a}
    assert ids("name eq 'O''Brien Ltd'") == {a}
    assert ids("name eq 'beta'") == {b}  # string comparison is case-insensitive
    assert ids(f"accountid eq {c}") == {c}
    assert ids("websiteurl eq null") == {a}
    assert ids("websiteurl ne null and name ne 'Gamma'") == {b}
    assert ids("(name eq 'Beta' or name eq 'Gamma') and modifiedon gt 2026-05-31T23:59:59Z") \
        == {b, c}
    assert ids(f"modifiedon eq 2026-06-01T00:00:00Z and accountid gt {min(b, c)}") == {max(b, c)}
    quoted = session.get(f"{api}accounts", params={
        "$filter": "modifiedon ge '2026-03-01T00:00:00Z'"})
    assert quoted.status_code == 400
    assert "incompatible types" in quoted.json()["error"]["message"]


def test_paging_follows_next_link_verbatim_without_gaps_on_ties(env: Started) -> None:
    app, session, api = env
    stamp = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
    created = set(_accounts(app, 23, at=stamp))
    url: str | None = (f"{api}accounts?$select=name,modifiedon&$filter=modifiedon ge "
                       "2026-01-01T00:00:00Z&$orderby=modifiedon asc")
    seen: list[str] = []
    pages = 0
    while url:
        answer = session.get(url, headers={"Prefer": "odata.maxpagesize=5"})
        assert answer.headers["Preference-Applied"] == "odata.maxpagesize=5"
        body = answer.json()
        assert len(body["value"]) <= 5
        seen += [r["accountid"] for r in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url
        pages += 1
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23 and set(seen) == created


def test_page_size_is_capped_at_5000(env: Started) -> None:
    app, session, api = env
    _accounts(app, 2)
    answer = session.get(f"{api}accounts?$select=name",
                         headers={"Prefer": "odata.maxpagesize=9000"})
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=5000"


def test_orderby_desc(env: Started) -> None:
    app, session, api = env
    for name in ("b", "c", "a"):
        app.create_record("account", {"name": name})
    body = session.get(f"{api}accounts?$select=name&$orderby=name desc").json()
    assert [r["name"] for r in body["value"]] == ["c", "b", "a"]


def test_formatted_values_for_choices_and_lookups(env: Started) -> None:
    app, session, api = env
    [account] = _accounts(app, 1)
    deal = app.create_record("opportunity", {
        "name": "Deal", "_parentaccountid_value": account, "new_registrationstatus": 100000001,
        "statecode": 0})
    headers = {"Prefer": 'odata.include-annotations="*"'}
    row = session.get(f"{api}opportunities({deal})?$select=new_registrationstatus,"
                      "_parentaccountid_value,statecode", headers=headers).json()
    formatted = "@OData.Community.Display.V1.FormattedValue"
    assert row["new_registrationstatus"] == 100000001
    assert row[f"new_registrationstatus{formatted}"] == "Active"
    assert row[f"statecode{formatted}"] == "Open"
    assert row[f"_parentaccountid_value{formatted}"] == "Acct 0"
    assert row["_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    plain = session.get(f"{api}opportunities({deal})?$select=new_registrationstatus").json()
    assert f"new_registrationstatus{formatted}" not in plain


def test_change_tracking_initial_and_delta(env: Started) -> None:
    app, session, api = env
    a, b, c = _accounts(app, 3)
    track = {"Prefer": "odata.track-changes,odata.maxpagesize=2"}
    url: str | None = f"{api}accounts?$select=name"
    initial: list[str] = []
    delta_link = None
    while url:
        body = session.get(url, headers=track).json()
        initial += [r["accountid"] for r in body["value"]]
        url = body.get("@odata.nextLink")
        delta_link = body.get("@odata.deltaLink", delta_link)
    assert set(initial) == {a, b, c}
    assert delta_link and "$deltatoken=" in delta_link

    app.update_record("account", a, {"name": "renamed"})
    app.delete_record("account", b)
    d = app.create_record("account", {"name": "new"})
    body = session.get(delta_link).json()
    assert body["@odata.context"].endswith("/$delta")
    rows = {r.get("accountid") or r["id"]: r for r in body["value"]}
    assert set(rows) == {a, b, d}
    assert rows[a]["name"] == "renamed"
    assert rows[b] == {"@odata.context": f"{api.rstrip('/')}/$metadata#accounts/$deletedEntity",
                       "id": b, "reason": "deleted"}
    assert body["@odata.deltaLink"] != delta_link
    assert session.get(body["@odata.deltaLink"]).json()["value"] == []


def test_expired_delta_token_answers_version_stamp_error(start: Callable[..., Started]) -> None:
    app, session, api = start(delta_token_retention=timedelta(days=7))
    _accounts(app, 1)
    body = session.get(f"{api}accounts?$select=name",
                       headers={"Prefer": "odata.track-changes"}).json()
    app.expire_delta_tokens()
    answer = session.get(body["@odata.deltaLink"])
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "0x80044352"
    assert "full sync" in answer.json()["error"]["message"]
    garbage = session.get(f"{api}accounts?$select=name&$deltatoken=nonsense")
    assert garbage.json()["error"]["code"] == "0x80044352"


def test_retention_is_configurable(start: Callable[..., Started]) -> None:
    _, session, api = start(delta_token_retention=timedelta(seconds=-1))
    body = session.get(f"{api}accounts?$select=name",
                       headers={"Prefer": "odata.track-changes"}).json()
    assert session.get(body["@odata.deltaLink"]).status_code == 400


# -- metadata ----------------------------------------------------------------------------------

def test_entity_definition_with_attributes(env: Started) -> None:
    _, session, api = env
    body = session.get(
        f"{api}EntityDefinitions(LogicalName='opportunity')",
        params={"$select": "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled",
                "$expand": "Attributes($select=LogicalName,SchemaName,AttributeType,"
                           "IsCustomAttribute,IsValidForUpdate)"}).json()
    assert body["EntitySetName"] == "opportunities" and body["ChangeTrackingEnabled"] is True
    attrs = {a["LogicalName"]: a for a in body["Attributes"]}
    assert attrs["new_partneraccount"]["SchemaName"] == "new_PartnerAccount"
    assert attrs["new_registrationstatus"]["AttributeType"] == "Picklist"
    assert attrs["new_registrationstatus"]["IsCustomAttribute"] is True
    assert attrs["modifiedon"]["IsValidForUpdate"] is False


def test_picklist_options_are_integers_with_labels(env: Started) -> None:
    _, session, api = env
    body = session.get(
        f"{api}EntityDefinitions(LogicalName='opportunity')/Attributes/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"}).json()
    options = {a["LogicalName"]: a["OptionSet"]["Options"] for a in body["value"]}
    status = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"]
              for o in options["new_registrationstatus"]}
    assert status[100000000] == "Pending" and status[100000001] == "Active"
    assert all(isinstance(v, int) for v in status)


def test_change_tracking_tables_and_systemusers(env: Started) -> None:
    _, session, api = env
    tracked = session.get(f"{api}EntityDefinitions", params={
        "$select": "SchemaName,LogicalName", "$filter": "ChangeTrackingEnabled eq true"}).json()
    assert {e["LogicalName"] for e in tracked["value"]} == {"account", "opportunity"}
    users = session.get(f"{api}systemusers?$select=fullname,applicationid").json()["value"]
    assert any(u["applicationid"] for u in users)


# -- service protection and faults -------------------------------------------------------------

def test_service_protection_answers_429_with_retry_after(start: Callable[..., Started]) -> None:
    _, session, api = start(request_limit=3, window_seconds=300)
    for _ in range(3):
        answer = session.get(f"{api}accounts?$select=name")
        assert answer.status_code == 200
    assert answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    answer = session.get(f"{api}accounts?$select=name")
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json() == {"error": {"code": "0x80072322", "message": (
        "Number of requests exceeded the limit of 3 over time window of 300 seconds.")}}


def test_injected_server_error_has_dataverse_shape(env: Started) -> None:
    app, session, api = env
    app.faults.error_next = 1
    answer = session.get(f"{api}accounts")
    assert answer.status_code == 500 and answer.json()["error"]["code"].startswith("0x")
    assert session.get(f"{api}accounts").status_code == 200


# -- seeding -----------------------------------------------------------------------------------

def test_from_seed_creates_custom_columns_and_values(tls: TlsFiles) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    crm = CrmSeed(connection="d365", vendor="dynamics", role="internal", distributor_id=None,
                  users=[SeedUser("u1", "Ann Smith", "ann@example.com")],
                  accounts=[SeedAccount("a1", "Contoso GmbH", "contoso.de", "DE", duns="123",
                                        vat_id="DE1", owner_user="u1", channel_owner="dist-1",
                                        created_at=now, modified_at=now)],
                  deals=[SeedDeal("d1", "a1", "Pumps", Decimal("1200.50"),
                                  "EUR", "open", now.date(), now, now, registered_by="dist-1",
                                  registration_status="active", registration_decision="extend")])
    app = DynamicsApp.from_seed(crm)
    [account] = app.store.tables["account"].rows.values()
    assert account["address1_country"] == "Germany" and account["new_duns"] == "123"
    assert account["new_channelowner"] == "dist-1" and account["modifiedon"] == \
        "2026-05-01T00:00:00Z"
    [deal] = app.store.tables["opportunity"].rows.values()
    assert deal["new_registrationstatus"] == 100000001
    assert deal["new_registrationdecision"] == 100000000
    assert deal["_parentaccountid_value"] == account["accountid"]
    assert deal["estimatedvalue"] == 1200.5


def test_load_fixture_accepts_labels_and_rejects_unknown_columns() -> None:
    app = DynamicsApp()
    app.load_fixture({"accounts": [{"accountid": "5f0c0000-0000-0000-0000-000000000001",
                                    "name": "Contoso", "modifiedon": "2026-03-01T10:00:00Z"}],
                      "opportunities": [{"name": "Pumps", "statecode": "Won",
                                         "_parentaccountid_value":
                                             "5f0c0000-0000-0000-0000-000000000001"}]})
    [deal] = app.store.tables["opportunity"].rows.values()
    assert deal["statecode"] == 1
    with pytest.raises(ValueError, match=r"accounts\[0\].*nosuch"):
        app.load_fixture({"accounts": [{"nosuch": 1}]})


def test_admin_hooks_edit_rows_as_a_user_would(env: Started) -> None:
    app, session, api = env
    root = app.credentials()["environment_url"] + "/__sandbox"
    created = session.post(f"{root}/records/accounts", json={"name": "Via admin"})
    assert created.status_code == 201
    row = created.json()
    edited = session.patch(f"{root}/records/accounts/{row['accountid']}",
                           json={"name": "Edited"}).json()
    assert edited["name"] == "Edited" and edited["versionnumber"] > row["versionnumber"]
    assert session.delete(f"{root}/records/accounts/{row['accountid']}").status_code == 204
    assert session.get(f"{api}accounts({row['accountid']})").status_code == 404
    assert session.post(f"{root}/expire-delta-tokens").status_code == 200
    assert app.delta_tokens_expired_before is not None


def test_serve_dynamics_tells_the_app_its_url(tls: TlsFiles) -> None:
    from sandbox.dynamics import serve_dynamics

    app = DynamicsApp(certificate=make_certificate())
    running = serve_dynamics(app, tls=tls)
    try:
        creds = app.credentials()
        assert creds["environment_url"] == running.base_url
        assert creds["authority"] == f"{running.base_url}/{app.tenant_id}"
        assert creds["scope"] == f"{running.base_url}/.default"
    finally:
        threading.Thread(target=running.stop, daemon=True).start()


def test_enum_cast_lists_every_choice_and_boolean(env: Started) -> None:
    _, session, api = env
    body = session.get(
        f"{api}EntityDefinitions(LogicalName='account')/Attributes/"
        "Microsoft.Dynamics.CRM.EnumAttributeMetadata",
        params={"$select": "LogicalName",
                "$expand": "OptionSet($select=Options,TrueOption,FalseOption)"}).json()
    sets = {a["LogicalName"]: a["OptionSet"] for a in body["value"]}
    assert sets["statecode"]["Options"][0]["Value"] == 0
    assert sets["new_channelconflict"]["TrueOption"]["Value"] == 1
    lookup = session.get(
        f"{api}EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName="
        "'new_partneraccount')/Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        params={"$select": "LogicalName,Targets"}).json()
    assert lookup["Targets"] == ["account"]


def test_primary_key_order_follows_inserts_deletes_and_rollbacks() -> None:
    app = DynamicsApp()
    store = app.store
    table = store.tables["account"]

    def in_order() -> list[str]:
        return table.keys_in_order()

    with app.lock:
        for n in (5, 1, 9):
            store.insert("account", {"name": f"n{n}"}, record_id=f"0000000{n}-0000-0000-0000-0")
        assert in_order() == sorted(table.rows)
        store.insert("account", {"name": "n3"}, record_id="00000003-0000-0000-0000-0")
        store.insert("account", {"name": "again"}, record_id="00000005-0000-0000-0000-0")
        store.delete("account", "00000009-0000-0000-0000-0")
        snapshot = in_order()
        assert snapshot == sorted(table.rows) and len(snapshot) == len(set(snapshot))
        store.begin()
        store.insert("account", {"name": "n0"}, record_id="00000000-0000-0000-0000-0")
        store.rollback()
        assert in_order() == sorted(table.rows) == snapshot
