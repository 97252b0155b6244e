"""HubSpot connector behaviour beyond the shared contract: search windows and the result
cap, associations, batching, pacing on the rate-limit headers, quotas, mapping checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from hubspot import HubSpot

from config.mapping_compiler import load_mapping_file
from connectors.base import Entity, Page, RecordUpdate
from connectors.errors import AuthError, BudgetExhaustedError, VendorError
from connectors.http import QuotaGovernor, RetryPolicy
from connectors.hubspot import ASSOCIATED_COMPANY, HubSpotConnector
from connectors.hubspot.connector import _chunks, encode
from sandbox.world import CrmSeed, SeedAccount, SeedDeal
from tests.connectors.harness_hubspot import HubSpotHarness, make_harness, no_sleep

MAPPING = Path(__file__).resolve().parents[2] / "config" / "mappings" / "hubspot.yaml"


@pytest.fixture
def h() -> Iterator[HubSpotHarness]:
    harness = make_harness()
    try:
        yield harness
    finally:
        harness.stop()


def pull(h: HubSpotHarness, entity: Entity, cursor: Any = None, **options: Any) -> list[Page]:
    connector = h.connector(**options)
    return list(connector.read(entity, cursor, list(h.fields(entity))))


def ids_of(pages: list[Page]) -> list[str]:
    return [r.id for p in pages for r in p.records]


def test_windows_restart_below_the_search_cap() -> None:
    h = make_harness(search_result_cap=25)
    try:
        created = h.create(Entity.ACCOUNT, 120)
        pages = pull(h, Entity.ACCOUNT, page_size=10)
        assert set(created) <= set(ids_of(pages))
        searches = h.app.requests.count("POST", "/search")
        assert searches <= -(-121 // 9) + 1  # one re-read record per keyset restart
    finally:
        h.stop()


def test_full_pull_call_count_is_near_the_minimum(h: HubSpotHarness) -> None:
    h.create(Entity.OPPORTUNITY, 1990)
    h.app.requests.reset()
    pages = pull(h, Entity.OPPORTUNITY)
    assert len(set(ids_of(pages))) == 1990
    searches = h.app.requests.count("POST", "/search")
    assert searches <= 10 + 1  # ceil(1990 / 200) = 10, plus at most 2% re-reads
    assert h.app.requests.count("POST", "/associations") == 2  # 1,000 deals per call
    assert h.app.requests.count() == searches + 2 + 1 + 1  # + properties + archived sweep


def test_more_ties_than_a_page_in_a_full_pull(h: HubSpotHarness) -> None:
    stamp = datetime(2026, 5, 1, tzinfo=UTC)
    tied = h.create(Entity.ACCOUNT, 35, modified_at=stamp)
    after = h.create(Entity.ACCOUNT, 5)
    pages = pull(h, Entity.ACCOUNT, page_size=10)
    seen = ids_of(pages)
    assert set(tied + after) <= set(seen) and len(seen) == len(set(seen))


def test_ties_beyond_the_search_cap_are_swept_by_id() -> None:
    h = make_harness(search_result_cap=25)  # HubSpot's cap is 10,000; a bulk import can tie
    try:
        stamp = datetime(2026, 5, 1, tzinfo=UTC)
        tied = h.create(Entity.ACCOUNT, 62, modified_at=stamp)
        after = h.create(Entity.ACCOUNT, 5)
        h.app.requests.reset()
        pages = pull(h, Entity.ACCOUNT, page_size=10)
        seen = ids_of(pages)
        assert set(tied + after) <= set(seen) and len(seen) == len(set(seen))
        searches = h.app.requests.count("POST", "/search")
        # + the page that finds the tie, + the sweep re-reading what that page held
        assert searches <= -(-(len(seen)) // 10) + 3
    finally:
        h.stop()


def test_association_batches_hold_exactly_1000_deals(h: HubSpotHarness) -> None:
    h.create(Entity.OPPORTUNITY, 2500)
    connector = h.connector()
    sizes: list[int] = []
    lookup = connector.api.deal_companies

    def counted(deal_ids: list[str]) -> dict[str, Any]:
        sizes.append(len(deal_ids))
        return lookup(deal_ids)

    connector.api.deal_companies = counted  # type: ignore[method-assign]  # spy on the batch sizes
    pages = list(connector.read(Entity.OPPORTUNITY, None, list(h.fields(Entity.OPPORTUNITY))))
    deals = [r for p in pages for r in p.records]
    assert len({r.id for r in deals}) == 2500
    assert sizes == [1000, 1000, 500]  # pages of 199 new deals do not add up to 1,000
    assert all(r.fields[ASSOCIATED_COMPANY] == h.company for r in deals)


def test_a_second_read_reuses_the_cached_properties(h: HubSpotHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    connector = h.connector(schema_ttl=timedelta(minutes=30))
    fields = list(h.fields(Entity.ACCOUNT))
    list(connector.read(Entity.ACCOUNT, None, fields))
    assert h.app.requests.count("GET", "/properties") == 1
    list(connector.read(Entity.ACCOUNT, None, fields))
    assert h.app.requests.count("GET", "/properties") == 1
    connector.describe(Entity.ACCOUNT)  # describe always asks HubSpot
    assert h.app.requests.count("GET", "/properties") == 2


def test_a_write_to_a_deleted_property_drops_the_cached_schema(h: HubSpotHarness) -> None:
    [company] = h.create(Entity.ACCOUNT, 1)
    field = h.writable_field(Entity.ACCOUNT)
    connector = h.connector()
    list(connector.read(Entity.ACCOUNT, None, ["name"]))
    h.drop_field(Entity.ACCOUNT, field)
    [result] = connector.write(Entity.ACCOUNT, [RecordUpdate(company, {field: "x"})])
    assert not result.ok and result.code == "PROPERTY_DOESNT_EXIST"
    list(connector.read(Entity.ACCOUNT, None, ["name"]))
    assert h.app.requests.count("GET", "/properties") == 2  # described again after the error


def test_primary_company_becomes_associatedcompanyid(h: HubSpotHarness) -> None:
    other = h.account.create("companies", {"name": "Second"})
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    h.account.associate(deal, other)  # a second, unlabeled association
    lonely = h.account.create("deals", {"dealname": "No company"})
    pages = pull(h, Entity.OPPORTUNITY)
    by_id = {r.id: r for p in pages for r in p.records}
    assert by_id[deal].fields[ASSOCIATED_COMPANY] == h.company
    assert by_id[lonely].fields[ASSOCIATED_COMPANY] is None
    no_assoc = h.connector().read(Entity.OPPORTUNITY, None, ["dealname"])
    h.app.requests.reset()
    list(no_assoc)
    assert h.app.requests.count("POST", "/associations") == 0


def test_a_deal_moved_to_another_company_is_seen_by_the_daily_full_read(
    h: HubSpotHarness,
) -> None:
    other = h.account.create("companies", {"name": "Elsewhere"})
    [deal] = h.create(Entity.OPPORTUNITY, 1)
    now = [time.time()]
    connector = h.connector(wall_clock=lambda: now[0])
    fields = ["dealname", ASSOCIATED_COMPANY]
    first = list(connector.read(Entity.OPPORTUNITY, None, fields))
    assert {r.id: r.fields[ASSOCIATED_COMPANY] for p in first for r in p.records}[deal] \
        == h.company
    h.account.make_primary(deal, other)  # no property changes: the modified date stays
    now[0] += 3600
    hourly = list(connector.read(Entity.OPPORTUNITY, first[-1].cursor, fields))
    assert deal not in {r.id for p in hourly for r in p.records}
    assert not any(p.full_refresh for p in hourly)
    now[0] += 86400
    daily = list(connector.read(Entity.OPPORTUNITY, hourly[-1].cursor, fields))
    assert {r.id: r.fields[ASSOCIATED_COMPANY] for p in daily for r in p.records}[deal] == other
    assert all(p.full_refresh for p in daily)
    after = list(connector.read(Entity.OPPORTUNITY, daily[-1].cursor, fields))
    assert not any(p.full_refresh for p in after)  # the next full read is a day away
    companies = list(connector.read(Entity.ACCOUNT, None, ["name"]))
    now[0] += 2 * 86400
    again = list(connector.read(Entity.ACCOUNT, companies[-1].cursor, ["name"]))
    assert not any(p.full_refresh for p in again)  # only deals carry associations


def test_archived_sweep_only_reports_new_archives(h: HubSpotHarness) -> None:
    old = h.create(Entity.ACCOUNT, 2)
    h.delete(Entity.ACCOUNT, old[0])
    first = pull(h, Entity.ACCOUNT)
    assert old[0] not in ids_of(first)  # a full refresh simply leaves it out
    h.delete(Entity.ACCOUNT, old[1])
    second = pull(h, Entity.ACCOUNT, first[-1].cursor)
    deleted = [r for p in second for r in p.records if r.deleted]
    assert [r.id for r in deleted] == [old[1]]
    third = pull(h, Entity.ACCOUNT, second[-1].cursor)
    assert not [r for p in third for r in p.records if r.deleted]


def test_lookback_catches_a_record_indexed_late(h: HubSpotHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    first = pull(h, Entity.ACCOUNT)
    cursor = first[-1].cursor
    newest = datetime.fromtimestamp(cursor["modified_ms"] / 1000, UTC)
    late = h.account.create("companies", {"name": "Late"},
                            modified_at=newest - timedelta(seconds=30))
    too_late = h.account.create("companies", {"name": "Ancient"},
                                modified_at=newest - timedelta(hours=1))
    again = ids_of(pull(h, Entity.ACCOUNT, cursor))
    assert late in again and too_late not in again
    assert len(again) == 1  # what was already delivered is not sent twice


def test_write_batches_of_100_and_per_record_results(h: HubSpotHarness) -> None:
    ids = h.create(Entity.OPPORTUNITY, 230)
    h.reject_writes(Entity.OPPORTUNITY, [ids[150]])
    updates = [RecordUpdate(id=i, fields={"channel_conflict_reason": f"r{n}"})
               for n, i in enumerate(ids)]
    updates.append(RecordUpdate(id=ids[0], fields={"channel_conflict": True}))
    updates.append(RecordUpdate(id="99", fields={"channel_conflict": True}))
    updates.append(RecordUpdate(id=ids[1], fields={ASSOCIATED_COMPANY: "1"}))
    h.app.requests.reset()
    results = h.connector().write(Entity.OPPORTUNITY, updates)
    assert [r.id for r in results] == [u.id for u in updates]
    # 100 + 100 + 31: the repeated id may join the last batch, which does not hold it yet
    assert h.app.requests.count("POST", "/batch/update") == 3
    failed = {n for n, r in enumerate(results) if not r.ok}
    assert failed == {150, 231, 232}
    assert results[150].error == "Blocked by a validation rule" and not results[150].retryable
    assert results[231].code == "OBJECT_NOT_FOUND"
    assert h.stored_value(Entity.OPPORTUNITY, ids[0], "channel_conflict") == "true"
    assert h.stored_value(Entity.OPPORTUNITY, ids[229], "channel_conflict_reason") == "r229"


def test_write_after_retries_spent_is_retryable_per_record(h: HubSpotHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 2)
    h.app.faults.error_next = 100
    results = h.connector().write(
        Entity.ACCOUNT, [RecordUpdate(id=i, fields={"channel_conflict_reason": "x"}) for i in ids])
    assert [r.ok for r in results] == [False, False] and all(r.retryable for r in results)


def test_a_repeated_id_never_shares_a_batch() -> None:
    updates = [RecordUpdate(id=i, fields={}) for i in ("1", "2", "1", "3", "3")]
    assert list(_chunks(updates)) == [[0, 1], [2, 3], [4]]
    many = [RecordUpdate(id=str(n), fields={}) for n in range(250)]
    assert [len(c) for c in _chunks(many)] == [100, 100, 50]


def test_encoding_of_values() -> None:
    assert encode(True) == "true" and encode(None) == ""
    assert encode(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert encode(datetime(2026, 1, 2, tzinfo=UTC).date()) == "2026-01-02"


class FakeTime:
    """Real time plus the waits a test skipped, shared by sandbox limits and connector."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.skipped += seconds

    def clock(self) -> float:
        return time.monotonic() + self.skipped


def test_slows_down_on_rate_limit_headers_before_a_429() -> None:
    fake = FakeTime()
    h = make_harness(burst_limit=12, clock=fake.clock)
    try:
        h.create(Entity.ACCOUNT, 150)
        pages = pull(h, Entity.ACCOUNT, page_size=10, sleep=fake.sleep)
        assert len(set(ids_of(pages))) == 151
        assert h.app.limits.refused == 0, "paced requests never meet a 429"
        assert fake.waits and max(fake.waits) == pytest.approx(10.0, abs=0.5)
    finally:
        h.stop()


def test_burst_share_leaves_room_for_other_apps() -> None:
    fake = FakeTime()
    h = make_harness(burst_limit=40, clock=fake.clock)
    try:
        h.create(Entity.ACCOUNT, 50)
        few = pull(h, Entity.ACCOUNT, page_size=50, sleep=fake.sleep, burst_share=0.5)
        assert len(ids_of(few)) == 51 and fake.waits == []  # 4 calls: far below 20
        earlier = h.app.requests.count()  # still inside the window: another app's share
        many = pull(h, Entity.ACCOUNT, page_size=2, sleep=fake.sleep, burst_share=0.5)
        assert len(set(ids_of(many))) == 51
        assert fake.waits and h.app.limits.refused == 0
        assert h.app.limits.peak_window <= earlier + 20  # we keep to half of 40 per 10 s
    finally:
        h.stop()


def test_search_pacing_keeps_under_the_search_limit() -> None:
    fake = FakeTime()
    h = make_harness(search_per_second=3, clock=fake.clock)
    try:
        h.create(Entity.ACCOUNT, 80)
        pages = pull(h, Entity.ACCOUNT, page_size=10, sleep=fake.sleep, search_per_second=3)
        assert len(set(ids_of(pages))) == 81
        assert h.app.limits.refused == 0
    finally:
        h.stop()


def test_429_is_retried_and_daily_limit_stops_the_connection(h: HubSpotHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    h.app.faults.rate_limit_next = 2
    with structlog.testing.capture_logs() as logs:
        assert len(ids_of(pull(h, Entity.ACCOUNT))) == 4
    assert [e["status"] for e in logs if e["event"] == "retrying"] == [429, 429]
    h.app.limits.daily = h.app.limits.used_today
    with pytest.raises(BudgetExhaustedError):
        pull(h, Entity.ACCOUNT)


def test_quota_share_stops_before_the_account_budget_is_spent() -> None:
    h = make_harness(daily_limit=40)
    try:
        h.create(Entity.ACCOUNT, 100)
        quota = QuotaGovernor(unit="requests", window="day", limit=None, share=0.25)
        with pytest.raises(BudgetExhaustedError) as err:
            pull(h, Entity.ACCOUNT, page_size=10, quota=quota)
        assert "10/10" in str(err.value)
        assert h.app.limits.used_today == 10 and h.app.limits.refused == 0
        assert quota.status().limit == 40 and quota.status().share_limit == 10
    finally:
        h.stop()


def test_wrong_token_is_an_auth_error_without_the_token(h: HubSpotHarness) -> None:
    token = h.app.token
    h.app.rotate_token()
    h.app.faults.expire_tokens()
    with pytest.raises(AuthError) as err:
        pull(h, Entity.ACCOUNT)
    assert "401" in str(err.value) and token not in str(err.value)


def test_a_wrong_certificate_authority_fails_clearly_without_retrying(h: HubSpotHarness) -> None:
    client = HubSpot(access_token=h.app.token, host=h.running.base_url,
                     ssl_ca_cert="/etc/ssl/certs/ca-certificates.crt")
    connector = HubSpotConnector(client=client, retry=RetryPolicy(sleep=no_sleep),
                                 quota=QuotaGovernor(unit="requests", window="day", limit=None))
    h.app.requests.reset()
    with pytest.raises(VendorError) as err:
        connector.describe(Entity.ACCOUNT)
    assert err.value.code == "TLS" and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert h.app.requests.count() == 0


def test_dropped_connections_and_malformed_bodies_are_retried(h: HubSpotHarness) -> None:
    h.create(Entity.ACCOUNT, 3)
    h.app.faults.drop_next = 1
    h.app.faults.malformed_next = 1
    h.app.faults.truncate_next = 1
    assert len(ids_of(pull(h, Entity.ACCOUNT))) == 4


def test_check_mapping_with_the_default_mapping(h: HubSpotHarness) -> None:
    seed = CrmSeed(connection="x", vendor="hubspot", role="distributor", distributor_id="D",
                   accounts=[SeedAccount(key="a", name="A", website=None, country="DE")],
                   deals=[SeedDeal(key="d", account_key="a", name="D", amount=Decimal(1),
                                   currency="EUR", stage="open", close_date=date(2026, 1, 1),
                                   created_at=datetime(2026, 1, 1, tzinfo=UTC),
                                   modified_at=datetime(2026, 1, 1, tzinfo=UTC))])
    h.account.seed(seed)
    mapping, doc = load_mapping_file(MAPPING, "hubspot.yaml", "hubspot")
    assert mapping is not None, doc.problems
    connector = h.connector()
    for name, entity in (("account", Entity.ACCOUNT), ("opportunity", Entity.OPPORTUNITY)):
        compiled = mapping.entities[name]
        reads = {f: None for f in compiled.vendor_fields}
        writes: dict[str, tuple[str | None, list[str]]] = {
            w.field: (None, []) for w in compiled.writes.values()
        }
        assert connector.check_mapping(entity, reads, writes) == []
    problems = connector.check_mapping(
        Entity.OPPORTUNITY, {"dealnme": "string", "closedate": "date", "dealstage": "boolean"},
        {"registration_status": ("string", ["active", "frozen"]),
         "notes_last_updated": ("datetime", [])})
    text = "\n".join(problems)
    assert "'dealnme' does not exist (did you mean 'dealname'?)" in text
    assert "'dealstage' is picklist, which cannot hold a boolean" in text
    assert "no option(s) frozen" in text and "'notes_last_updated' is read-only" in text
    assert len(problems) == 4


def test_two_connections_at_once() -> None:
    a, b = make_harness(), make_harness()
    try:
        made = {"a": a.create(Entity.ACCOUNT, 150), "b": b.create(Entity.ACCOUNT, 130)}
        out: dict[str, list[str]] = {}

        def run(name: str, h: HubSpotHarness) -> None:
            out[name] = ids_of(pull(h, Entity.ACCOUNT, page_size=20))

        threads = [threading.Thread(target=run, args=(n, h)) for n, h in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert set(made["a"]) <= set(out["a"]) and len(out["a"]) == 151
        assert set(made["b"]) <= set(out["b"]) and len(out["b"]) == 131
    finally:
        a.stop()
        b.stop()
