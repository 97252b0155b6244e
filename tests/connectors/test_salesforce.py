"""Salesforce connector behaviour beyond the shared contract suite."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import connectors.salesforce.connector as sf_connector
from config.mapping_compiler import load_mapping_file
from connectors.base import Entity, Page, RecordUpdate
from connectors.errors import AuthError, BudgetExhaustedError, SchemaDriftError
from connectors.http import RetryPolicy, make_session
from connectors.salesforce import (
    ClientCredentialsAuth,
    JwtBearerAuth,
    SalesforceConnector,
    SessionAuth,
    daily_quota,
)
from tests.connectors.harness_salesforce import FIELDS, SalesforceHarness, no_sleep

ACCOUNT_FIELDS = list(FIELDS[Entity.ACCOUNT])
OPP_FIELDS = list(FIELDS[Entity.OPPORTUNITY])


@pytest.fixture
def h() -> Iterator[SalesforceHarness]:
    harness = SalesforceHarness()
    yield harness
    harness.stop()


def pull(connector: SalesforceConnector, entity: Entity, cursor: Any = None,
         fields: list[str] | None = None) -> list[Page]:
    return list(connector.read(entity, cursor, fields or list(FIELDS[entity])))


def ids_of(pages: list[Page]) -> list[str]:
    return [r.id for p in pages for r in p.records]


def test_jwt_session_is_reminted_when_it_expires_mid_read(h: SalesforceHarness) -> None:
    created = h.create(Entity.ACCOUNT, 450)
    connector = h.connector(page_size=200)
    stream = connector.read(Entity.ACCOUNT, None, ACCOUNT_FIELDS)
    first = next(stream)
    h.app.faults.expire_tokens()
    rest = list(stream)
    assert set(created) <= set(ids_of([first, *rest]))
    assert h.app.requests.count("POST", "/services/oauth2/token") == 2


def test_fixed_session_token_fails_with_a_clear_auth_error(h: SalesforceHarness) -> None:
    h.create(Entity.ACCOUNT, 2)
    connector = SalesforceConnector(
        session=make_session(ca_bundle=h.creds["ca_file"]),
        auth=SessionAuth(session_id=h.creds["session_id"], instance_url=h.creds["instance_url"]),
        retry=RetryPolicy(sleep=no_sleep), quota=daily_quota())
    assert len(ids_of(pull(connector, Entity.ACCOUNT))) == 2
    h.app.faults.expire_tokens()
    h.app.requests.reset()
    with pytest.raises(AuthError, match="cannot be renewed"):
        pull(connector, Entity.ACCOUNT)
    assert h.app.requests.count() <= 2


def test_client_credentials_flow_reads(h: SalesforceHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    connector = SalesforceConnector(
        session=make_session(ca_bundle=h.creds["ca_file"]),
        auth=ClientCredentialsAuth(login_url=h.creds["login_url"],
                                   consumer_key=h.creds["consumer_key"],
                                   consumer_secret=h.creds["consumer_secret"]),
        retry=RetryPolicy(sleep=no_sleep), quota=daily_quota())
    assert len(ids_of(pull(connector, Entity.ACCOUNT))) == 3
    wrong = SalesforceConnector(
        session=make_session(ca_bundle=h.creds["ca_file"]),
        auth=ClientCredentialsAuth(login_url=h.creds["login_url"],
                                   consumer_key=h.creds["consumer_key"], consumer_secret="x"),
        retry=RetryPolicy(sleep=no_sleep), quota=daily_quota())
    with pytest.raises(AuthError, match="invalid client credentials"):
        pull(wrong, Entity.ACCOUNT)


def test_jwt_for_an_unapproved_user_is_an_auth_error(h: SalesforceHarness) -> None:
    connector = SalesforceConnector(
        session=make_session(ca_bundle=h.creds["ca_file"]),
        auth=JwtBearerAuth(login_url=h.creds["login_url"], consumer_key=h.creds["consumer_key"],
                           username="nobody@acme.example",
                           private_key=h.creds["private_key_pem"]),
        retry=RetryPolicy(sleep=no_sleep), quota=daily_quota())
    with pytest.raises(AuthError, match="user hasn't approved this consumer"):
        pull(connector, Entity.ACCOUNT)


def test_daily_limit_stops_the_connection_without_retrying() -> None:
    h = SalesforceHarness(daily_limit=50)
    try:
        h.create(Entity.ACCOUNT, 10)
        h.app.spend_api_requests(50)  # other integrations used up the org's allocation
        connector = h.connector(page_size=200)
        h.app.requests.reset()
        with pytest.raises(BudgetExhaustedError, match="TotalRequests"):
            pull(connector, Entity.ACCOUNT)
        rest_calls = h.app.requests.count() - h.app.requests.count("POST", "/oauth2/token")
        assert rest_calls == 1  # refused once, never retried
        h.app.reset_api_usage()  # the rolling day moved on: the next cycle resumes
        assert len(ids_of(pull(connector, Entity.ACCOUNT))) == 10
        assert connector.budget().limit == 50
    finally:
        h.stop()


def test_quota_share_stops_before_the_vendor_limit(h: SalesforceHarness) -> None:
    h.app.daily_limit = 10
    h.create(Entity.ACCOUNT, 1200)
    quota = daily_quota(share=0.5)
    connector = h.connector(page_size=200, quota=quota)
    with pytest.raises(BudgetExhaustedError, match="budget share spent"):
        pull(connector, Entity.ACCOUNT)
    status = connector.budget()
    assert status.limit == 10 and status.share_limit == 5 and status.used == 5
    assert h.app.requests.count("GET") == 5


def test_budget_tracks_sforce_limit_info(h: SalesforceHarness) -> None:
    h.create(Entity.ACCOUNT, 5)
    connector = h.connector()
    pull(connector, Entity.ACCOUNT)
    status = connector.budget()
    assert status.unit == "requests" and status.window == "day"
    assert status.limit == 100_000
    assert status.used == len(h.app._calls)  # what the org counted, not our own tally


def test_full_pull_costs_one_query_call_per_2000_records(h: SalesforceHarness) -> None:
    h.create(Entity.ACCOUNT, 4500)
    connector = h.connector()
    h.app.requests.reset()
    pages = pull(connector, Entity.ACCOUNT)
    total = len(ids_of(pages))
    queries = h.app.requests.count("GET", "/query")
    assert total >= 4500 and queries == math.ceil(total / 2000)
    assert all(p.full_refresh for p in pages) and pages[-1].complete


def test_incremental_read_uses_query_all_and_surfaces_deletes(h: SalesforceHarness) -> None:
    ids = h.create(Entity.OPPORTUNITY, 3)
    connector = h.connector()
    cursor = pull(connector, Entity.OPPORTUNITY)[-1].cursor
    h.delete(Entity.OPPORTUNITY, ids[0])
    pages = pull(connector, Entity.OPPORTUNITY, cursor)
    deleted = [r for p in pages for r in p.records if r.deleted]
    assert [r.id for r in deleted] == [ids[0]]
    assert not any(p.full_refresh for p in pages)
    assert h.app.requests.count("GET", "/queryAll") == 1
    assert h.app.requests.count("GET", "/deleted") == 1


def test_exceeded_delete_window_forces_a_full_refresh(h: SalesforceHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 3)
    connector = h.connector()
    cursor = dict(pull(connector, Entity.ACCOUNT)[-1].cursor)
    stale = {**cursor, "since": "2026-01-01T00:00:00.000+0000", "recent": {}}
    pages = pull(connector, Entity.ACCOUNT, stale)
    assert pages and all(p.full_refresh for p in pages) and pages[-1].complete
    assert set(ids) <= set(ids_of(pages))
    # an emptied recycle bin moves earliestDateAvailable past a recent cursor too
    h.delete(Entity.ACCOUNT, ids[1])
    h.app.org.purge()
    again = pull(connector, Entity.ACCOUNT, cursor)
    assert all(p.full_refresh for p in again) and ids[1] not in ids_of(again)


def test_lookback_catches_late_commits_without_redelivering(h: SalesforceHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 3)
    connector = h.connector()
    cursor = pull(connector, Entity.ACCOUNT)[-1].cursor
    h.tick()
    h.tick()
    late = h.app.org.create("Account", {"Name": "Committed late"},
                            at=datetime.now(UTC) - timedelta(minutes=2))
    pages = pull(connector, Entity.ACCOUNT, cursor)
    got = ids_of(pages)
    assert late in got
    assert ids[0] not in got and ids[1] not in got  # older than the cursor's second: deduped


def test_relationship_fields_are_flattened_with_dots(h: SalesforceHarness) -> None:
    org = h.app.org
    partner = org.create("Account", {"Name": "Nordic AB", "Distributor_Id__c": "DIST-9",
                                     "IsPartner": True})
    customer = org.create("Account", {"Name": "Acme GmbH"})
    registered = org.create("Opportunity", {"Name": "Via partner", "AccountId": customer,
                                            "StageName": "Prospecting", "CloseDate": "2026-07-01",
                                            "Partner_Account__c": partner})
    direct = org.create("Opportunity", {"Name": "Direct", "StageName": "Prospecting",
                                        "CloseDate": "2026-07-01"})
    records = {r.id: r for p in pull(h.connector(), Entity.OPPORTUNITY) for r in p.records}
    assert records[registered].fields["Partner_Account__r.Distributor_Id__c"] == "DIST-9"
    assert records[registered].fields["Account.Name"] == "Acme GmbH"
    assert records[direct].fields["Partner_Account__r.Distributor_Id__c"] is None
    assert records[direct].fields["Account.Name"] is None
    assert "Partner_Account__r" not in records[registered].fields


def test_schema_drift_on_a_parent_field_names_the_path(h: SalesforceHarness) -> None:
    h.app.org.drop_field("Account", "Distributor_Id__c")
    with pytest.raises(SchemaDriftError) as err:
        pull(h.connector(), Entity.OPPORTUNITY)
    assert err.value.fields == ("Partner_Account__r.Distributor_Id__c",)
    # Parent paths are left to SOQL (no describe per related object on every read): the
    # one query is rejected before any record, then the describes name the mapped path.
    assert h.app.requests.count("GET", "/query") == 1


def test_a_second_read_within_the_ttl_describes_nothing(h: SalesforceHarness) -> None:
    h.app.org.create("Opportunity", {"Name": "One", "StageName": "Prospecting",
                                     "CloseDate": "2026-07-01"})
    connector = h.connector()
    pull(connector, Entity.OPPORTUNITY)
    first = h.app.requests.count("GET", "/describe")
    pull(connector, Entity.OPPORTUNITY)
    assert first == 1  # only the object read; related objects are checked by SOQL itself
    assert h.app.requests.count("GET", "/describe") == first


def test_every_soql_goes_through_format_soql(h: SalesforceHarness,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = sf_connector.format_soql

    def spy(query: str, *args: Any, **kwargs: Any) -> str:
        out = real(query, *args, **kwargs)
        calls.append(out)
        return out

    monkeypatch.setattr(sf_connector, "format_soql", spy)
    h.create(Entity.ACCOUNT, 2)
    connector = h.connector()
    cursor = pull(connector, Entity.ACCOUNT)[-1].cursor
    pull(connector, Entity.ACCOUNT, cursor)
    assert len(calls) == 2
    assert "WHERE SystemModstamp >= 20" in calls[1] and calls[1].endswith("ORDER BY "
                                                                         "SystemModstamp, Id")


def test_writes_batch_200_per_call_and_map_each_save_result(h: SalesforceHarness) -> None:
    ids = h.create(Entity.OPPORTUNITY, 450)
    h.reject_writes(Entity.OPPORTUNITY, [ids[7], ids[300]])
    updates = [RecordUpdate(id=i, fields={"Channel_Conflict__c": True,
                                          "Channel_Conflict_Reason__c": f"r{n}"})
               for n, i in enumerate(ids)]
    updates[10] = RecordUpdate(id=ids[10], fields={"Registration_Status__c": "Bogus"})
    h.app.requests.reset()
    results = h.connector().write(Entity.OPPORTUNITY, updates)
    assert h.app.requests.count("PATCH", "/composite/sobjects") == 3
    assert [r.id for r in results] == ids
    failed = {r.id: r for r in results if not r.ok}
    assert set(failed) == {ids[7], ids[10], ids[300]}
    assert failed[ids[7]].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "locked" in (failed[ids[7]].error or "")
    assert failed[ids[10]].code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert not failed[ids[10]].retryable
    assert h.stored_value(Entity.OPPORTUNITY, ids[449], "Channel_Conflict_Reason__c") == "r449"


def test_two_connections_at_once_stay_apart() -> None:
    one, two = SalesforceHarness(), SalesforceHarness()
    try:
        a = one.create(Entity.ACCOUNT, 2)
        b = two.create(Entity.ACCOUNT, 3)
        got_a = ids_of(pull(one.connector(), Entity.ACCOUNT))
        got_b = ids_of(pull(two.connector(), Entity.ACCOUNT))
        assert set(a) <= set(got_a) and set(b) <= set(got_b)
        assert len(got_a) == 2 and len(got_b) == 3
    finally:
        one.stop()
        two.stop()


def test_check_mapping_reports_typos_types_writability_and_picklists(
    h: SalesforceHarness,
) -> None:
    problems = h.connector().check_mapping(
        Entity.OPPORTUNITY,
        reads={"Name": "string", "Chanel_Owner__c": "string", "CloseDate": "boolean",
               "Partner_Account__r.Distributor_Id__c": "string"},
        writes={"IsWon": ("boolean", [True]),
                "Registration_Status__c": ("string", ["Active", "Lapsed"])},
    )
    text = "\n".join(problems)
    assert "Chanel_Owner__c" in text and "did you mean 'Channel_Owner__c'" in text
    assert "CloseDate: Salesforce type date does not fit the mapped type boolean" in text
    assert "IsWon: not updateable" in text
    assert "'Lapsed' not among" in text
    assert len(problems) == 4


def test_default_mapping_fits_a_seeded_org(h: SalesforceHarness) -> None:
    mapping, doc = load_mapping_file(Path("config/mappings/salesforce.yaml"), "salesforce.yaml",
                                     "salesforce")
    assert mapping is not None, doc.problems
    connector = h.connector()
    for entity in (Entity.ACCOUNT, Entity.OPPORTUNITY):
        spec = mapping.entity(entity.value)
        reads = {f.field: f.type for f in spec.fields.values()}
        writes = {w.field: (w.type, [v for v in (w.values or {}).values()])
                  for w in spec.writes.values()}
        assert connector.check_mapping(entity, reads, writes) == []
    assert "Partner_Account__r.Distributor_Id__c" in mapping.read_fields("opportunity")


def test_a_full_read_interrupted_after_a_page_resumes_without_a_gap(
    h: SalesforceHarness,
) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    org = h.app.org
    ids = [org.create("Account", {"Name": f"Old {n}"}, at=old + timedelta(seconds=n))
           for n in range(450)]
    connector = h.connector(page_size=200)
    first = next(connector.read(Entity.ACCOUNT, None, ACCOUNT_FIELDS))  # then the process dies
    rest = pull(connector, Entity.ACCOUNT, first.cursor)
    assert set(ids) <= set(ids_of([first, *rest]))


def test_field_names_are_case_insensitive_like_the_api(h: SalesforceHarness) -> None:
    [acc] = h.create(Entity.ACCOUNT, 1)
    h.modify(Entity.ACCOUNT, acc, "Channel_Owner__c", "DIST-4")
    pages = pull(h.connector(), Entity.ACCOUNT, fields=["name", "channel_owner__c", "owner.email"])
    [record] = [r for p in pages for r in p.records]
    assert record.fields["channel_owner__c"] == "DIST-4"
    assert record.fields["name"] == "Harness Account 0"
    assert record.fields["owner.email"] == "integration@channelsync.example"


def test_client_credentials_refuse_the_generic_login_host() -> None:
    auth = ClientCredentialsAuth(login_url="https://login.salesforce.com", consumer_key="k",
                                 consumer_secret="s")
    with pytest.raises(AuthError, match="My Domain"):
        auth.mint(make_session())
