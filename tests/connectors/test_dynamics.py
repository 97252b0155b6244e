"""Dataverse connector behaviour beyond the shared contract: auth variants, modifiedon
windows, delta expiry, option sets, lookups, concurrency, batching, quotas, mapping checks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.mapping_compiler import load_mapping_file
from connectors.base import Entity, Page, Record, RecordUpdate
from connectors.dynamics import CertificateCredential, DynamicsConnector, MsalTokenProvider
from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    RateLimitedError,
    SchemaDriftError,
)
from connectors.http import QuotaGovernor, RetryPolicy, make_session
from tests.connectors.harness_dynamics import DynamicsHarness, make_harness

MAPPING = Path(__file__).resolve().parents[2] / "config" / "mappings" / "dynamics.yaml"


@pytest.fixture
def h() -> Iterator[DynamicsHarness]:
    harness = make_harness()
    yield harness
    harness.stop()


@pytest.fixture
def h_no_tracking() -> Iterator[DynamicsHarness]:
    harness = make_harness(use_change_tracking=False)
    yield harness
    harness.stop()


def read(connector: DynamicsConnector, entity: Entity, cursor: Any, fields: Any
         ) -> tuple[list[Page], Any]:
    pages = list(connector.read(entity, cursor, list(fields)))
    return pages, pages[-1].cursor


def by_id(pages: list[Page]) -> dict[str, Record]:
    return {r.id: r for p in pages for r in p.records}


def count(h: DynamicsHarness, method: str, route: str) -> int:
    return h.app.requests.count(method, route)


def test_certificate_credential_reads(h: DynamicsHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 2)
    creds = h.app.credentials()
    session = make_session(ca_bundle=str(h.tls.ca_file))
    for credential in (CertificateCredential(creds["private_key_pem"],
                                             public_certificate_pem=creds["certificate_pem"]),
                       CertificateCredential(creds["private_key_pem"],
                                             thumbprint=creds["thumbprint"])):
        tokens = MsalTokenProvider(client_id=creds["client_id"], authority=creds["authority"],
                                   credential=credential,
                                   environment_url=creds["environment_url"], http_client=session)
        connector = h.connector(token_provider=tokens, session=session)
        pages, _ = read(connector, Entity.ACCOUNT, None, ["name"])
        assert set(ids) <= set(by_id(pages))


def test_wrong_secret_is_an_auth_error_without_the_secret(h: DynamicsHarness) -> None:
    creds = h.app.credentials()
    session = make_session(ca_bundle=str(h.tls.ca_file))
    tokens = MsalTokenProvider(client_id=creds["client_id"], authority=creds["authority"],
                               credential="not-the-secret-42",
                               environment_url=creds["environment_url"], http_client=session)
    connector = DynamicsConnector(
        session=session, environment_url=creds["environment_url"], token_provider=tokens,
        retry=RetryPolicy(sleep=lambda _s: None),
        quota=QuotaGovernor(unit="requests", window="5min", limit=6000))
    with pytest.raises(AuthError) as err:
        read(connector, Entity.ACCOUNT, None, ["name"])
    assert "invalid_client" in str(err.value) and "not-the-secret-42" not in str(err.value)


def test_full_pull_costs_one_call_per_page(h: DynamicsHarness) -> None:
    h.create(Entity.ACCOUNT, 95)
    h.app.requests.reset()
    pages, _ = read(h.connector(page_size=10), Entity.ACCOUNT, None, ["name"])
    total = sum(len(p.records) for p in pages)
    assert total == 95
    assert count(h, "GET", "/<set_name>") == math.ceil(total / 10)
    # + msal's discovery and token, the table metadata (no choice column: no option sets)
    assert h.app.requests.count() == math.ceil(total / 10) + 2 + 1


def test_delta_brings_changes_and_deletes_then_expiry_resyncs(h: DynamicsHarness) -> None:
    ids = h.create(Entity.OPPORTUNITY, 4)
    fields = h.fields(Entity.OPPORTUNITY)
    _, cursor = read(h.connector(), Entity.OPPORTUNITY, None, fields)
    assert cursor["mode"] == "delta"
    h.modify(Entity.OPPORTUNITY, ids[0], "new_channelconflictreason", "overlap")
    h.delete(Entity.OPPORTUNITY, ids[1])
    pages, cursor = read(h.connector(), Entity.OPPORTUNITY, cursor, fields)
    seen = by_id(pages)
    assert set(seen) == {ids[0], ids[1]}
    assert seen[ids[1]].deleted and not seen[ids[0]].deleted
    assert seen[ids[0]].fields["new_channelconflictreason"] == "overlap"
    assert not any(p.full_refresh for p in pages)

    h.app.expire_delta_tokens()
    pages, cursor = read(h.connector(page_size=2), Entity.OPPORTUNITY, cursor, fields)
    assert all(p.full_refresh for p in pages) and pages[-1].complete
    assert set(by_id(pages)) == {ids[0], ids[2], ids[3]}
    assert cursor["mode"] == "delta"


def test_changed_selection_resyncs_in_full(h: DynamicsHarness) -> None:
    h.create(Entity.ACCOUNT, 2)
    _, cursor = read(h.connector(), Entity.ACCOUNT, None, ["name"])
    pages, _ = read(h.connector(), Entity.ACCOUNT, cursor, ["name", "websiteurl"])
    assert all(p.full_refresh for p in pages) and len(by_id(pages)) >= 2


def test_modifiedon_windows_with_ties_lookback_and_dedup(h_no_tracking: DynamicsHarness) -> None:
    h = h_no_tracking
    stamp = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    tied = h.create(Entity.ACCOUNT, 12, modified_at=stamp)
    connector = h.connector(page_size=5)
    pages, cursor = read(connector, Entity.ACCOUNT, None, ["name"])
    assert cursor["mode"] == "modifiedon" and all(p.full_refresh for p in pages)
    assert set(tied) <= set(by_id(pages))
    h.app.requests.reset()
    again, cursor2 = read(h.connector(page_size=5), Entity.ACCOUNT, cursor, ["name"])
    assert by_id(again) == {}, "rows inside the lookback are not delivered twice"
    assert not any(p.full_refresh for p in again)
    assert count(h, "GET", "/<set_name>") == math.ceil(len(tied) / 5)  # the lookback re-reads
    h.modify(Entity.ACCOUNT, tied[3], "name", "changed")
    more = h.create(Entity.ACCOUNT, 3, modified_at=stamp)  # back-dated inside the lookback
    latest, _ = read(h.connector(page_size=5), Entity.ACCOUNT, cursor2, ["name"])
    got = by_id(latest)
    assert set(got) == {tied[3], *more}
    assert got[tied[3]].fields["name"] == "changed"


def test_choices_read_as_labels_and_written_as_values(h: DynamicsHarness) -> None:
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    pages, _ = read(h.connector(), Entity.OPPORTUNITY, None, ["new_registrationstatus",
                                                              "statecode", "salesstage"])
    record = by_id(pages)[deal]
    assert {k: record.fields[k] for k in ("new_registrationstatus", "statecode",
                                          "salesstage")} == {
        "new_registrationstatus": "Active", "statecode": "Open", "salesstage": "Develop"}
    h.app.requests.reset()
    results = h.connector().write(Entity.OPPORTUNITY, [
        RecordUpdate(deal, {"new_registrationstatus": "Expired",
                            "new_channelconflict": True}, etag=record.etag),
        RecordUpdate(deal, {"new_registrationstatus": "Bogus"})])
    assert results[0].ok, results[0].error
    assert not results[1].ok and "Bogus" in (results[1].error or "")
    assert h.app.get_record("opportunity", deal)["new_registrationstatus"] == 100000003  # type: ignore[index]  # row exists
    assert count(h, "POST", "$batch") == 1


def test_lookups_are_written_with_odata_bind(h: DynamicsHarness) -> None:
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    partner = h.app.create_record("account", {"name": "Distributor"})
    [result] = h.connector().write(Entity.OPPORTUNITY, [
        RecordUpdate(deal, {"_new_partneraccount_value": partner})])
    assert result.ok, result.error
    assert h.app.get_record("opportunity", deal)["_new_partneraccount_value"] == partner  # type: ignore[index]  # row exists


def test_stale_etag_is_a_conflict_not_an_overwrite(h: DynamicsHarness) -> None:
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    pages, _ = read(h.connector(), Entity.OPPORTUNITY, None, ["name"])
    etag = by_id(pages)[deal].etag
    h.modify(Entity.OPPORTUNITY, deal, "new_routedto", "dist-by-hand")
    [result] = h.connector().write(Entity.OPPORTUNITY, [
        RecordUpdate(deal, {"new_routedto": "dist-ours"}, etag=etag)])
    assert result.conflict and not result.ok and not result.retryable
    assert h.stored_value(Entity.OPPORTUNITY, deal, "new_routedto") == "dist-by-hand"


def test_write_never_recreates_a_deleted_row(h: DynamicsHarness) -> None:
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    h.delete(Entity.OPPORTUNITY, deal)
    [result] = h.connector().write(Entity.OPPORTUNITY, [RecordUpdate(deal, {"name": "x"})])
    assert not result.ok and result.code == "0x80040217"
    assert h.app.get_record("opportunity", deal) is None


def test_writes_go_in_batches_of_1000(h: DynamicsHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 5)
    updates = [RecordUpdate(ids[i % 5], {"new_customerid": f"c{i}"}) for i in range(2300)]
    h.app.requests.reset()
    results = h.connector().write(Entity.ACCOUNT, updates)
    assert len(results) == 2300 and all(r.ok for r in results)
    assert count(h, "POST", "$batch") == 3


def test_429_retry_after_is_honoured() -> None:
    h = make_harness(request_limit=3, window_seconds=300)
    try:
        h.create(Entity.ACCOUNT, 3)
        sleeps: list[float] = []
        # no governor limit here: the point is the vendor's own 429 and its Retry-After
        connector = h.connector(page_size=1, retry=RetryPolicy(attempts=2, sleep=sleeps.append),
                                quota=QuotaGovernor(unit="requests", window="5min", limit=None))
        with pytest.raises(RateLimitedError) as err:
            read(connector, Entity.ACCOUNT, None, ["name"])
        assert err.value.retry_after is not None and err.value.retry_after > 1
        assert sleeps and sleeps[0] == pytest.approx(min(err.value.retry_after, 120), abs=1)
    finally:
        h.stop()


def test_quota_share_stops_the_connection(h: DynamicsHarness) -> None:
    h.create(Entity.ACCOUNT, 30)
    quota = QuotaGovernor(unit="requests", window="5min", limit=20, share=0.5)
    connector = h.connector(page_size=2, quota=quota)
    with pytest.raises(BudgetExhaustedError):
        read(connector, Entity.ACCOUNT, None, ["name"])
    status = connector.budget()
    assert status.used == 10 and status.share_limit == 10 and status.window == "5min"


def test_quota_window_slides() -> None:
    now = [0.0]
    h = make_harness()
    try:
        quota = QuotaGovernor(unit="requests", window="5min", limit=6, share=0.5)
        connector = h.connector(quota=quota, clock=lambda: now[0])
        read(connector, Entity.ACCOUNT, None, ["name", "statecode"])  # metadata 1 + page 1
        read(connector, Entity.ACCOUNT, None, ["name"])  # cached metadata, page 1: 3 of 3
        with pytest.raises(BudgetExhaustedError):
            read(connector, Entity.ACCOUNT, None, ["name"])
        now[0] = 301.0
        pages, _ = read(connector, Entity.ACCOUNT, None, ["name"])
        assert pages[-1].complete
    finally:
        h.stop()


def test_unknown_option_value_is_skipped_with_reason(h: DynamicsHarness) -> None:
    ids = h.create(Entity.OPPORTUNITY, 2)
    h.app.corrupt_record("opportunity", ids[0], "new_registrationstatus", 999)
    pages, _ = read(h.connector(), Entity.OPPORTUNITY, None, ["new_registrationstatus"])
    skipped = [s for p in pages for s in p.skipped]
    assert [s.id for s in skipped] == [ids[0]] and "999" in skipped[0].reason
    assert ids[1] in by_id(pages)


def test_an_option_added_since_the_metadata_was_read_is_learned_not_skipped(
    h: DynamicsHarness,
) -> None:
    ids = h.create(Entity.OPPORTUNITY, 3)
    connector = h.connector(schema_ttl=timedelta(hours=1))
    read(connector, Entity.OPPORTUNITY, None, ["new_registrationstatus"])
    h.app.add_option("opportunity", "new_registrationstatus", 777, "On hold")
    h.app.corrupt_record("opportunity", ids[0], "new_registrationstatus", 777)
    h.app.corrupt_record("opportunity", ids[1], "new_registrationstatus", 778)  # truly unknown
    described = count(h, "GET", "/RetrieveMetadataChanges(<path:params>)")
    pages, _ = read(connector, Entity.OPPORTUNITY, None, ["new_registrationstatus"])
    records = by_id(pages)
    assert records[ids[0]].fields["new_registrationstatus"] == "On hold"
    assert [s.id for s in pages[0].skipped] == [ids[1]] and "778" in pages[0].skipped[0].reason
    # one metadata call for the whole read, not one per unknown value
    assert count(h, "GET", "/RetrieveMetadataChanges(<path:params>)") == described + 1


def test_two_environments_at_once() -> None:
    first, second = make_harness(), make_harness()
    try:
        a = first.create(Entity.ACCOUNT, 2)
        b = second.create(Entity.ACCOUNT, 3)
        pages_a, _ = read(first.connector(), Entity.ACCOUNT, None, ["name"])
        pages_b, _ = read(second.connector(), Entity.ACCOUNT, None, ["name"])
        assert set(by_id(pages_a)) == set(a) and set(by_id(pages_b)) == set(b)
    finally:
        first.stop()
        second.stop()


def test_check_mapping_reports_problems(h: DynamicsHarness) -> None:
    problems = h.connector().check_mapping(
        Entity.OPPORTUNITY,
        reads={"nmae": "string", "estimatedvalue": "boolean",
               "new_registrationexpireson": "datetime", "name": "string"},
        writes={"modifiedon": ("datetime", []),
                "new_registrationstatus": ("string", ["Active", "Frozen"]),
                "new_channelconflict": ("boolean", [])})
    text = "\n".join(problems)
    assert "nmae: no such column (did you mean 'name'?)" in text
    assert "estimatedvalue: is decimal, cannot be read as boolean" in text
    assert "new_registrationexpireson: is a date-only column" in text
    assert "modifiedon: is not valid for update" in text
    assert "unknown option(s) Frozen" in text
    assert len(problems) == 5


def test_default_mapping_fits_the_seeded_schema(h: DynamicsHarness) -> None:
    mapping, doc = load_mapping_file(MAPPING, "dynamics.yaml", "dynamics")
    assert mapping is not None, doc.problems
    connector = h.connector()
    for entity in (Entity.ACCOUNT, Entity.OPPORTUNITY):
        spec = mapping.entity(entity.value)
        reads = {f.field: f.type for f in spec.fields.values()}
        writes = {w.field: (w.type, [v for v in (w.values or {}).values()])
                  for w in spec.writes.values()}
        assert connector.check_mapping(entity, reads, writes) == []


def test_seeded_records_map_to_canonical_values() -> None:
    from decimal import Decimal

    from sandbox.world import CrmSeed, SeedAccount, SeedDeal, SeedUser

    now = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    crm = CrmSeed(connection="d365", vendor="dynamics", role="internal", distributor_id=None,
                  users=[SeedUser("u1", "Ann Smith", "ann@example.com")],
                  accounts=[SeedAccount("a1", "Contoso GmbH", "contoso.de", "DE", duns="123",
                                        vat_id="DE1", owner_user="u1", channel_owner="dist-1",
                                        created_at=now, modified_at=now)],
                  deals=[SeedDeal("d1", "a1", "Pumps", Decimal("1200.50"), "EUR", "won",
                                  now.date(), now, now, registered_by="dist-1",
                                  registration_status="active",
                                  registration_expires_at=now.date())])
    h = DynamicsHarness()
    try:
        from sandbox.dynamics.seed import load_seed

        load_seed(h.app, crm)
        mapping, _ = load_mapping_file(MAPPING, "dynamics.yaml", "dynamics")
        assert mapping is not None
        connector = h.connector()
        [account] = [r for p in connector.read(Entity.ACCOUNT, None,
                                               mapping.read_fields("account")) for r in p.records]
        acc = mapping.to_canonical("account", account.fields)
        assert acc["country"] == "DE" and acc["duns"] == "123" and acc["channel_owner"] == "dist-1"
        [deal] = [r for p in connector.read(Entity.OPPORTUNITY, None,
                                            mapping.read_fields("opportunity"))
                  for r in p.records]
        opp = mapping.to_canonical("opportunity", deal.fields)
        assert opp["currency"] == "EUR" and opp["stage_category"] == "won"
        assert opp["account_ref"] == account.id and opp["amount"] == Decimal("1200.5")
        assert opp["registration_status"] == "active" and opp["stage_raw"] == "Close"
        assert opp["close_date"] == now.date() and opp["registered_by"] == "dist-1"
    finally:
        h.stop()


def test_repeated_reads_reuse_metadata_and_token_until_the_ttl(h: DynamicsHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    connector = h.connector(schema_ttl=timedelta(minutes=30))
    fields = [*h.fields(Entity.ACCOUNT), "statecode"]  # with a choice column read as labels
    read(connector, Entity.ACCOUNT, None, fields)
    metadata, tokens = count(h, "GET", "RetrieveMetadataChanges"), count(h, "POST", "/token")
    assert (metadata, tokens) == (1, 1)  # the table, its columns and their option sets
    assert count(h, "GET", "EntityDefinitions") == 0
    meta = connector.table(Entity.ACCOUNT)
    assert meta.columns["statecode"].options == {0: "Active", 1: "Inactive"}

    read(connector, Entity.ACCOUNT, None, fields)
    assert count(h, "GET", "RetrieveMetadataChanges") == 1  # cached metadata
    assert count(h, "POST", "/token") == tokens  # msal's cached token, still valid

    h.offset += 31 * 60  # past the TTL: one call asks what changed since the stamp
    read(connector, Entity.ACCOUNT, None, fields)
    assert count(h, "GET", "RetrieveMetadataChanges") == 2
    assert connector.table(Entity.ACCOUNT) is meta  # nothing changed: the cache stays

    h.app.drop_attribute("account", "accountnumber")  # a column the mapping does not read
    h.offset += 31 * 60  # the change check sees the deleted column and reads the table again
    read(connector, Entity.ACCOUNT, None, fields)
    assert count(h, "GET", "RetrieveMetadataChanges") == 4
    fresh = connector.table(Entity.ACCOUNT)
    assert fresh is not meta and "accountnumber" not in fresh.columns

    h.app.schema_journal.expire()  # the service no longer knows the stamp: read it all
    h.offset += 31 * 60
    read(connector, Entity.ACCOUNT, None, fields)
    assert count(h, "GET", "RetrieveMetadataChanges") == 6


def test_change_tracking_switched_off_is_seen_after_the_ttl(h: DynamicsHarness) -> None:
    h.create(Entity.ACCOUNT, 2)
    connector = h.connector(schema_ttl=timedelta(minutes=30))
    fields = list(h.fields(Entity.ACCOUNT))
    _, cursor = read(connector, Entity.ACCOUNT, None, fields)
    assert cursor["mode"] == "delta"
    h.app.set_change_tracking("account", False)
    h.offset += 31 * 60
    _, cursor = read(connector, Entity.ACCOUNT, None, fields)
    assert not connector.table(Entity.ACCOUNT).change_tracking
    assert cursor["mode"] != "delta"


def test_a_dropped_mapped_column_fails_before_any_data_after_the_ttl(h: DynamicsHarness
                                                                    ) -> None:
    h.create(Entity.ACCOUNT, 2)
    connector = h.connector(schema_ttl=timedelta(minutes=30))
    fields = list(h.fields(Entity.ACCOUNT))
    read(connector, Entity.ACCOUNT, None, fields)
    h.app.drop_attribute("account", "new_duns")
    h.offset += 31 * 60
    pages_before = count(h, "GET", "/<set_name>")
    with pytest.raises(SchemaDriftError) as err:
        read(connector, Entity.ACCOUNT, None, fields)
    assert "new_duns" in str(err.value) and err.value.fields == ("new_duns",)
    assert count(h, "GET", "/<set_name>") == pages_before  # no page was read


def test_an_unknown_table_is_schema_drift(h: DynamicsHarness) -> None:
    connector = h.connector(tables={Entity.ACCOUNT: "new_nosuchtable"})
    with pytest.raises(SchemaDriftError, match=r"new_nosuchtable.*does not exist"):
        read(connector, Entity.ACCOUNT, None, ["name"])
