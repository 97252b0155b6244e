"""Pipedrive connector behaviour beyond the shared contract: hash keys, options, deletes,
reconciliation, token budget, burst pacing, call counts and mapping checks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from structlog.testing import capture_logs

from config.mapping_compiler import load_mapping_file
from connectors.base import Entity, Page, Record, RecordUpdate
from connectors.errors import AuthError, BudgetExhaustedError, SchemaDriftError, VendorError
from connectors.http import Pacer, QuotaGovernor, RetryPolicy, make_session
from connectors.pipedrive import PipedriveConnector
from sandbox.pipedrive import PipedriveSandbox
from sandbox.serving import serve
from tests.connectors.harness_pipedrive import WRITABLE, PipedriveHarness, no_sleep
from tests.sandbox.test_pipedrive import small_seed

DEALS = Entity.OPPORTUNITY
ORGS = Entity.ACCOUNT


@pytest.fixture
def h() -> Iterator[PipedriveHarness]:
    harness = PipedriveHarness()
    yield harness
    harness.stop()


def read(connector: Any, entity: Entity, cursor: Any, fields: Any) -> tuple[list[Page], Any]:
    pages = list(connector.read(entity, cursor, list(fields)))
    return pages, pages[-1].cursor


def by_id(pages: list[Page]) -> dict[str, Record]:
    return {r.id: r for p in pages for r in p.records}


class MovableClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_custom_fields_resolve_by_name_on_each_company() -> None:
    apps = [PipedriveSandbox.from_seed(small_seed()) for _ in range(2)]
    keys = [app.field_key("deals", "Registered by") for app in apps]
    assert keys[0] != keys[1]
    for app in apps:
        running = serve(app)
        try:
            connector = PipedriveConnector(
                session=requests.Session(), base_url=running.base_url, api_token=app.api_token,
                retry=RetryPolicy(sleep=no_sleep), quota=QuotaGovernor(
                    unit="tokens", window="day", limit=None))
            pages, _ = read(connector, DEALS, None, ["title", "Registered by",
                                                     "Registration status", "org_id"])
            records = by_id(pages)
            assert {r.fields["Registered by"] for r in records.values()} == {"D-7"}
            assert {r.fields["Registration status"] for r in records.values()} == {"Active"}
        finally:
            running.stop()


def test_option_labels_are_written_as_ids_and_read_back_as_labels(h: PipedriveHarness) -> None:
    [deal] = h.create(DEALS, 1)
    connector = h.connector()
    _, cursor = read(connector, DEALS, None, h.fields(DEALS))
    results = connector.write(DEALS, [RecordUpdate(deal, {"Registration status": "Expired",
                                                          "Channel conflict": "Yes",
                                                          "Registration expires": "2026-12-31"})])
    assert results[0].ok, results[0].error
    stored = h.app.record_data("deals", int(deal))["custom_fields"]
    status_key = h.app.field_key("deals", "Registration status")
    assert isinstance(stored[status_key], int)
    pages, _ = read(connector, DEALS, cursor, h.fields(DEALS))
    fields = by_id(pages)[deal].fields
    assert fields["Registration status"] == "Expired" and fields["Channel conflict"] == "Yes"
    assert fields["Registration expires"] == "2026-12-31"


def test_unknown_option_fails_that_record_without_a_call(h: PipedriveHarness) -> None:
    ids = h.create(DEALS, 2)
    connector = h.connector()
    connector.describe(DEALS)
    h.app.requests.reset()
    results = connector.write(DEALS, [
        RecordUpdate(ids[0], {"Registration status": "Bogus"}),
        RecordUpdate(ids[1], {"Registration status": "Released"}),
    ])
    assert [r.ok for r in results] == [False, True]
    assert results[0].code == "invalid_value" and "Bogus" in (results[0].error or "")
    assert h.app.requests.count("PATCH") == 1


def test_set_fields_read_and_write_label_lists(h: PipedriveHarness) -> None:
    h.app.company.fields.add_custom("deals", "Regions", "set", ["North", "South", "East"])
    [deal] = h.create(DEALS, 1)
    connector = h.connector()
    connector.describe(DEALS)
    assert connector.write(DEALS, [RecordUpdate(deal, {"Regions": ["North", "East"]})])[0].ok
    pages, _ = read(connector, DEALS, None, ["Regions"])
    assert by_id(pages)[deal].fields["Regions"] == ["North", "East"]
    assert connector.write(DEALS, [RecordUpdate(deal, {"Regions": []})])[0].ok  # [] -> null
    assert h.stored_value(DEALS, deal, "Regions") is None


def test_deleted_deals_come_from_the_status_deleted_feed(h: PipedriveHarness) -> None:
    ids = h.create(DEALS, 3)
    connector = h.connector()
    _, cursor = read(connector, DEALS, None, h.fields(DEALS))
    h.delete(DEALS, ids[0])
    pages, cursor = read(connector, DEALS, cursor, h.fields(DEALS))
    seen = by_id(pages)
    assert seen[ids[0]].deleted and not any(p.full_refresh for p in pages)
    assert pages[-1].complete
    h.advance(timedelta(seconds=3))  # the delete's second is final from now on
    _, cursor = read(connector, DEALS, cursor, h.fields(DEALS))
    pages, _ = read(connector, DEALS, cursor, h.fields(DEALS))
    assert ids[0] not in by_id(pages)


def test_organization_deletes_are_found_by_the_periodic_full_read(h: PipedriveHarness) -> None:
    ids = h.create(ORGS, 5)
    clock = MovableClock()
    # page_size 2: the organizations do not fit one page, so no per-cycle id check
    connector = h.connector(clock=clock, org_reconcile_every=timedelta(hours=6), page_size=2)
    _, cursor = read(connector, ORGS, None, h.fields(ORGS))
    assert cursor["known_ids"] is None
    h.delete(ORGS, ids[1])
    pages, cursor = read(connector, ORGS, cursor, h.fields(ORGS))
    assert not any(p.full_refresh for p in pages)  # within the interval: incremental
    assert not any(r.deleted for p in pages for r in p.records)
    clock.now += timedelta(hours=6, seconds=1)
    pages, cursor = read(connector, ORGS, cursor, h.fields(ORGS))
    assert all(p.full_refresh for p in pages) and pages[-1].complete
    assert set(by_id(pages)) == {ids[0], ids[2], ids[3], ids[4]}
    pages, _ = read(connector, ORGS, cursor, h.fields(ORGS))
    assert not any(p.full_refresh for p in pages)


def test_small_companies_reconcile_organization_ids_every_read_at_no_extra_cost(
    h: PipedriveHarness,
) -> None:
    ids = h.create(ORGS, 4)
    connector = h.connector(page_size=5)
    _, cursor = read(connector, ORGS, None, h.fields(ORGS))
    assert cursor["known_ids"] == sorted(int(i) for i in ids)
    h.advance(timedelta(seconds=10))
    _, cursor = read(connector, ORGS, cursor, h.fields(ORGS))  # boundary re-delivery settles
    h.delete(ORGS, ids[2])
    h.app.requests.reset()
    pages, cursor = read(connector, ORGS, cursor, h.fields(ORGS))
    assert h.app.requests.count("GET", "/api/v2/organizations") == 1
    seen = by_id(pages)
    assert seen[ids[2]].deleted and seen[ids[2]].fields == {}
    assert not any(p.full_refresh for p in pages)
    assert ids[0] not in seen  # unchanged organizations are listed, not delivered again
    h.create(ORGS, 3)  # 6 live organizations no longer fit a page of 5
    pages, cursor = read(connector, ORGS, cursor, h.fields(ORGS))
    assert cursor["known_ids"] is None and len(by_id(pages)) == 3


def test_deals_fall_back_to_a_full_read_past_the_30_day_delete_window(
    h: PipedriveHarness,
) -> None:
    h.create(DEALS, 2)
    clock = MovableClock()
    connector = h.connector(clock=clock)
    _, cursor = read(connector, DEALS, None, h.fields(DEALS))
    clock.now += timedelta(days=29, minutes=1)
    pages, _ = read(connector, DEALS, cursor, h.fields(DEALS))
    assert all(p.full_refresh for p in pages)


def test_an_interrupted_full_read_starts_over(h: PipedriveHarness) -> None:
    h.create(ORGS, 12)
    connector = h.connector(page_size=5)
    first = next(iter(connector.read(ORGS, None, list(h.fields(ORGS)))))
    assert first.full_refresh and not first.complete
    pages, _ = read(connector, ORGS, first.cursor, h.fields(ORGS))
    assert all(p.full_refresh for p in pages) and len(by_id(pages)) == 12


def test_boundary_records_are_delivered_again_only_while_their_second_is_open(
    h: PipedriveHarness,
) -> None:
    ids = h.create(ORGS, 4)
    connector = h.connector()
    _, cursor = read(connector, ORGS, None, h.fields(ORGS))
    again, cursor = read(connector, ORGS, cursor, h.fields(ORGS))
    assert ids[-1] in by_id(again)  # stamped in the current second: maybe not final
    h.advance(timedelta(seconds=3))
    _, cursor = read(connector, ORGS, cursor, h.fields(ORGS))  # now delivered as final
    settled_again, _ = read(connector, ORGS, cursor, h.fields(ORGS))
    assert by_id(settled_again) == {}
    h.modify(ORGS, ids[0], "Channel owner", "D-9")
    changed, _ = read(connector, ORGS, cursor, h.fields(ORGS))
    assert by_id(changed)[ids[0]].fields["Channel owner"] == "D-9"


def test_full_pull_and_write_back_use_the_minimum_calls(h: PipedriveHarness) -> None:
    ids = h.create(ORGS, 1203)
    connector = h.connector()
    h.app.requests.reset()
    pages, _ = read(connector, ORGS, None, h.fields(ORGS))
    assert len(by_id(pages)) == 1203
    assert h.app.requests.count("GET", "/api/v2/organizations") == math.ceil(1203 / 500)
    assert h.app.requests.count() == math.ceil(1203 / 500) + 1  # + the field list
    h.app.requests.reset()
    updates = [RecordUpdate(i, {"Channel conflict reason": "overlap"}) for i in ids[:40]]
    assert all(r.ok for r in connector.write(ORGS, updates))
    assert h.app.requests.count() == 40


def test_daily_budget_seen_in_headers_stops_before_the_call() -> None:
    harness = PipedriveHarness(daily_tokens=25)
    try:
        harness.create(ORGS, 3)
        connector = harness.connector()
        read(connector, ORGS, None, harness.fields(ORGS))  # fields 10 + list 10
        with pytest.raises(BudgetExhaustedError):
            read(connector, ORGS, None, harness.fields(ORGS))
        assert harness.app.requests.count() == 2  # the third call was never made
    finally:
        harness.stop()


def test_daily_budget_429_from_the_vendor_is_not_retried(h: PipedriveHarness) -> None:
    h.create(ORGS, 3)
    connector = h.connector()
    read(connector, ORGS, None, h.fields(ORGS))
    h.app.limits.set_spent(h.app.limits.daily_tokens - 3)  # other apps spent the budget
    h.app.requests.reset()
    with pytest.raises(BudgetExhaustedError, match="daily token budget"):
        read(connector, ORGS, None, h.fields(ORGS))
    assert h.app.requests.count() == 1


def test_quota_share_stops_before_the_call_and_tracks_vendor_headers(
    h: PipedriveHarness,
) -> None:
    h.create(ORGS, 2)
    quota = QuotaGovernor(unit="tokens", window="day", limit=None, share=0.5)
    connector = h.connector(quota=quota)
    read(connector, ORGS, None, h.fields(ORGS))
    status = connector.budget()
    assert status.unit == "tokens" and status.limit == 10_000_000 and status.used == 20
    quota.observe(used=5_000_000 - 5)  # the company spent the rest of our share elsewhere
    h.app.requests.reset()
    with pytest.raises(BudgetExhaustedError):
        read(connector, ORGS, None, h.fields(ORGS))
    assert h.app.requests.count() == 0


@pytest.mark.parametrize("pace_first", [True, False])
def test_burst_window_is_paced_or_429_retried_after_reset(pace_first: bool) -> None:
    harness = PipedriveHarness(burst_limit=3)
    try:
        harness.create(ORGS, 4)
        retry_waits: list[float] = []
        pauses: list[float] = []

        def waiter(into: list[float]) -> Any:
            def sleep(seconds: float) -> None:
                into.append(seconds)
                harness.advance(timedelta(seconds=seconds))  # the sandbox's window rolls

            return sleep

        # reserve -1 never pauses: the sandbox's 429 and the retry policy take over
        pacer = Pacer(reserve=0 if pace_first else -1, sleep=waiter(pauses))
        connector = harness.connector(page_size=1, retry=RetryPolicy(sleep=waiter(retry_waits)),
                                      pacer=pacer)
        pages, _ = read(connector, ORGS, None, harness.fields(ORGS))
        assert len(by_id(pages)) == 4
        if pace_first:
            assert pauses and not retry_waits  # slowed down before any 429
        else:
            assert retry_waits and all(w >= 1 for w in retry_waits)  # x-ratelimit-reset
    finally:
        harness.stop()


def test_schema_drift_names_the_missing_field(h: PipedriveHarness) -> None:
    h.create(DEALS, 1)
    h.drop_field(DEALS, "Registered by")
    h.app.requests.reset()
    with pytest.raises(SchemaDriftError) as err:
        read(h.connector(), DEALS, None, h.fields(DEALS))
    assert err.value.fields == ("Registered by",)
    assert h.app.requests.count("GET", "/api/v2/deals") == 0


def test_a_second_read_within_the_ttl_lists_no_fields(h: PipedriveHarness) -> None:
    ids = h.create(ORGS, 3)
    connector = h.connector()
    fields = ["name", "website", WRITABLE]
    connector.write(ORGS, [RecordUpdate(i, {WRITABLE: "set"}) for i in ids])
    assert h.app.requests.count("GET", "Fields") == 1  # loaded for the write
    h.app.requests.reset()
    pages, _ = read(connector, ORGS, None, fields)
    assert {r.fields[WRITABLE] for r in pages[0].records} == {"set"}
    # within the TTL, and every mapped custom key shows up in the first page: no field list
    assert h.app.requests.count("GET", "Fields") == 0


def test_duplicate_custom_field_names_are_refused(h: PipedriveHarness) -> None:
    fields = h.app.company.fields
    fields.by_entity["deals"].append(
        type(fields.custom("deals")[0])("f" * 40, "Registered by", "varchar", True))
    with pytest.raises(SchemaDriftError, match="several custom fields"):
        read(h.connector(), DEALS, None, ["Registered by"])


def test_malformed_record_is_skipped_and_others_flow(h: PipedriveHarness) -> None:
    ids = h.create(ORGS, 3)
    h.corrupt(ORGS, ids[0])
    pages, _ = read(h.connector(), ORGS, None, h.fields(ORGS))
    skipped = [s for p in pages for s in p.skipped]
    assert [s.id for s in skipped] == [ids[0]] and "update_time" in skipped[0].reason
    assert set(by_id(pages)) == {ids[1], ids[2]}


@responses.activate
def test_non_json_403_is_a_vendor_error_not_a_retry() -> None:
    responses.add(responses.GET, "https://pd.example/api/v2/organizationFields", status=403,
                  body="<html>Cloudflare</html>", content_type="text/html")
    connector = PipedriveConnector(
        session=requests.Session(), base_url="https://pd.example", api_token="t0ken-secret",
        retry=RetryPolicy(sleep=no_sleep), quota=QuotaGovernor(unit="tokens", window="day",
                                                               limit=None))
    with pytest.raises(VendorError, match="403"):
        connector.describe(ORGS)
    assert len(responses.calls) == 1


def test_the_api_token_never_reaches_the_logs(h: PipedriveHarness) -> None:
    h.create(ORGS, 2)
    h.app.faults.error_next = 1
    with capture_logs() as logs:
        read(h.connector(), ORGS, None, h.fields(ORGS))
    assert logs and h.app.api_token not in repr(logs)


def test_a_refused_api_token_fails_the_connection_at_once_and_says_why(
    h: PipedriveHarness,
) -> None:
    wrong = "0" * 40
    connector = PipedriveConnector(
        session=make_session(ca_bundle=str(h.tls.ca_file)), base_url=h.running.base_url,
        api_token=wrong, retry=RetryPolicy(sleep=no_sleep),
        quota=QuotaGovernor(unit="tokens", window="day", limit=None))
    h.app.requests.reset()
    with pytest.raises(AuthError, match="401") as err:
        read(connector, ORGS, None, h.fields(ORGS))
    assert "API token was refused" in str(err.value) and wrong not in str(err.value)
    assert h.app.requests.count() == 1  # refused once, never retried


def _mapping_checks(entity: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    mapping, doc = load_mapping_file(Path("config/mappings/pipedrive.yaml"), "pipedrive.yaml",
                                     "pipedrive")
    assert mapping is not None, doc.problems
    spec = mapping.entity(entity)
    reads: dict[str, str | None] = {f.field: f.type for f in spec.fields.values()}
    writes = {w.field: (w.type, list((w.values or {}).values())) for w in spec.writes.values()}
    return reads, writes


@pytest.mark.parametrize("entity", [ORGS, DEALS])
def test_default_mapping_fits_a_seeded_company(entity: Entity) -> None:
    app = PipedriveSandbox.from_seed(small_seed())
    running = serve(app)
    try:
        connector = PipedriveConnector(
            session=requests.Session(), base_url=running.base_url, api_token=app.api_token,
            retry=RetryPolicy(sleep=no_sleep),
            quota=QuotaGovernor(unit="tokens", window="day", limit=None))
        reads, writes = _mapping_checks(entity.value)
        assert connector.check_mapping(entity, reads, writes) == []
        reads["Chanel owner"] = "string"
        writes["Registration status" if entity is DEALS else "Channel conflict"] = (
            "string", ["Maybe"])
        writes["update_time"] = ("datetime", [])
        reads["Channel conflict reason"] = "decimal"
        problems = connector.check_mapping(entity, reads, writes)
        assert any("Chanel owner" in p and "did you mean 'Channel owner'" in p for p in problems)
        assert any("'Maybe'" in p for p in problems)
        assert any("update_time" in p and "not writable" in p for p in problems)
        assert any("Channel conflict reason" in p and "decimal" in p for p in problems)
    finally:
        running.stop()


@pytest.mark.parametrize("fault", ["truncate_next", "malformed_next", "drop_next"])
def test_broken_responses_are_retried(h: PipedriveHarness, fault: str) -> None:
    ids = h.create(DEALS, 7)
    connector = h.connector(page_size=5)
    connector.describe(DEALS)
    setattr(h.app.faults, fault, 1)
    pages, _ = read(connector, DEALS, None, h.fields(DEALS))
    assert set(ids) <= set(by_id(pages))
    assert getattr(h.app.faults, fault) == 0
