"""The contract every connector passes against its vendor's sandbox.

Each vendor ships ``tests/connectors/harness_<vendor>.py`` (see ``harness.py``); the same
tests run for all four. They check what the sync layer relies on: every record arrives at
least once, cursors never skip, deletes surface, transient faults are retried within bounds,
per-record write results, schema drift stops before any data, bad records are reported.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from connectors.base import Entity, Page, Record, RecordUpdate
from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    ConnectorError,
    SchemaDriftError,
    TransientError,
)
from connectors.http import RetryPolicy
from tests.connectors.harness import Harness

VENDORS = ("salesforce", "hubspot", "pipedrive", "dynamics")
ENTITIES = (Entity.ACCOUNT, Entity.OPPORTUNITY)


@pytest.fixture(params=VENDORS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    module = importlib.import_module(f"tests.connectors.harness_{request.param}")
    h: Harness = module.make_harness()
    try:
        yield h
    finally:
        h.stop()


def read_all(
    h: Harness, entity: Entity, cursor: Any = None, *, page_size: int | None = None
) -> tuple[list[Page], Any]:
    connector = h.connector(page_size=page_size)
    pages = list(connector.read(entity, cursor, list(h.fields(entity))))
    final = pages[-1].cursor if pages else cursor
    return pages, final


def records(pages: Sequence[Page]) -> list[Record]:
    return [r for p in pages for r in p.records]


def latest(pages: Sequence[Page]) -> dict[str, Record]:
    """The last version of each record, as the store would keep it."""
    out: dict[str, Record] = {}
    for r in records(pages):
        out[r.id] = r
    return out


@pytest.mark.parametrize("entity", ENTITIES)
def test_full_read_pages_through_everything(harness: Harness, entity: Entity) -> None:
    size = harness.min_page_size()
    created = harness.create(entity, 2 * size + 7)
    harness.app.requests.reset()

    pages, cursor = read_all(harness, entity, page_size=size)

    seen = latest(pages)
    assert set(created) <= set(seen)
    assert len(pages) >= 3
    assert all(p.full_refresh for p in pages), "a read without cursor is a full refresh"
    assert pages[-1].complete and not any(p.complete for p in pages[:-1])
    assert cursor is not None
    minimum = math.ceil(len(seen) / size)
    # list calls plus at most one helper call per page (associations) and a few for schema/auth
    assert harness.app.requests.count() <= 2 * minimum + 6


@pytest.mark.parametrize("entity", ENTITIES)
def test_incremental_read_with_no_change_brings_nothing_new(
    harness: Harness, entity: Entity
) -> None:
    harness.create(entity, 5)
    first, cursor = read_all(harness, entity)
    before = latest(first)

    again, cursor2 = read_all(harness, entity, cursor)

    for r in records(again):  # a lookback may re-deliver, but only what we already have
        assert r.id in before and r.modified_at == before[r.id].modified_at
    assert cursor2 is not None
    assert not any(p.full_refresh for p in again)


def test_ties_on_the_cursor_at_a_page_boundary(harness: Harness) -> None:
    size = harness.min_page_size()
    entity = Entity.OPPORTUNITY
    _, cursor = read_all(harness, entity)
    stamp = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    tied = harness.create(entity, 2 * size + 3, modified_at=stamp)

    pages, _ = read_all(harness, entity, cursor, page_size=size)

    assert set(tied) <= set(latest(pages))


def test_records_modified_while_paging_are_not_lost(harness: Harness) -> None:
    size = harness.min_page_size()
    entity = Entity.OPPORTUNITY
    created = harness.create(entity, 3 * size)
    field = harness.writable_field(entity)
    connector = harness.connector(page_size=size)
    stream = connector.read(entity, None, list(harness.fields(entity)))

    pages = [next(stream)]
    first_ids = [r.id for r in pages[0].records]
    early = first_ids[0]
    late = next(i for i in reversed(created) if i not in first_ids)
    harness.modify(entity, early, field, "changed-early")
    harness.modify(entity, late, field, "changed-late")
    pages.extend(stream)
    more, _ = read_all(harness, entity, pages[-1].cursor)

    seen = latest([*pages, *more])
    assert set(created) <= set(seen)
    assert seen[early].fields[field] == "changed-early"
    assert seen[late].fields[field] == "changed-late"


@pytest.mark.parametrize("entity", ENTITIES)
def test_deletes_surface(harness: Harness, entity: Entity) -> None:
    ids = harness.create(entity, 3)
    _, cursor = read_all(harness, entity)

    harness.delete(entity, ids[1])
    pages, _ = read_all(harness, entity, cursor)

    seen = latest(pages)
    if ids[1] in seen:
        assert seen[ids[1]].deleted
    else:  # the vendor has no delete feed for this entity: a complete full read omits it
        assert pages and all(p.full_refresh for p in pages) and pages[-1].complete
        assert ids[0] in seen and not seen[ids[0]].deleted


def test_rate_limited_then_success(harness: Harness) -> None:
    ids = harness.create(Entity.ACCOUNT, 3)
    harness.app.faults.rate_limit_next = 2

    pages, _ = read_all(harness, Entity.ACCOUNT)

    assert set(ids) <= set(latest(pages))
    assert harness.app.faults.rate_limit_next == 0


def test_server_error_storm_is_retried_then_bounded(harness: Harness) -> None:
    ids = harness.create(Entity.ACCOUNT, 3)
    harness.app.faults.error_next = 2
    pages, _ = read_all(harness, Entity.ACCOUNT)
    assert set(ids) <= set(latest(pages))

    harness.app.faults.error_next = 1000
    harness.app.requests.reset()
    with pytest.raises(TransientError):
        read_all(harness, Entity.ACCOUNT)
    assert harness.app.requests.count() < 30, "retries must be bounded"


def test_expired_token_is_renewed_or_fails_clearly(harness: Harness) -> None:
    ids = harness.create(Entity.ACCOUNT, 2)
    connector = harness.connector()
    list(connector.read(Entity.ACCOUNT, None, list(harness.fields(Entity.ACCOUNT))))
    harness.app.faults.expire_tokens()
    harness.app.requests.reset()

    try:
        pages = list(connector.read(Entity.ACCOUNT, None, list(harness.fields(Entity.ACCOUNT))))
    except AuthError as exc:
        assert str(exc)
    else:
        assert set(ids) <= set(latest(pages))
    assert harness.app.requests.count() < 20


def test_partial_write_failure_is_reported_per_record(harness: Harness) -> None:
    entity = Entity.OPPORTUNITY
    ids = harness.create(entity, 3)
    field = harness.writable_field(entity)
    pages, _ = read_all(harness, entity)
    etags = {r.id: r.etag for r in records(pages)}
    harness.reject_writes(entity, [ids[1]])

    results = harness.connector().write(
        entity,
        [
            RecordUpdate(id=i, fields={field: f"v-{n}"}, etag=etags.get(i))
            for n, i in enumerate(ids)
        ],
    )

    assert [r.id for r in results] == ids
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error
    assert harness.stored_value(entity, ids[0], field) == "v-0"
    assert harness.stored_value(entity, ids[2], field) == "v-2"
    assert harness.stored_value(entity, ids[1], field) != "v-1"


def test_own_write_echoes_back_with_new_value(harness: Harness) -> None:
    entity = Entity.ACCOUNT
    ids = harness.create(entity, 1)
    field = harness.writable_field(entity)
    pages, cursor = read_all(harness, entity)
    etag = latest(pages)[ids[0]].etag

    [result] = harness.connector().write(
        entity, [RecordUpdate(id=ids[0], fields={field: "echo"}, etag=etag)]
    )
    assert result.ok, result.error
    again, _ = read_all(harness, entity, cursor)

    assert latest(again)[ids[0]].fields[field] == "echo"


@pytest.mark.parametrize("entity", ENTITIES)
def test_schema_drift_stops_before_any_data(harness: Harness, entity: Entity) -> None:
    harness.create(entity, 2)
    field = harness.writable_field(entity)
    harness.drop_field(entity, field)
    connector = harness.connector()

    stream = connector.read(entity, None, list(harness.fields(entity)))
    with pytest.raises(SchemaDriftError) as err:
        next(stream)
    assert field in str(err.value)
    assert field in err.value.fields


@pytest.mark.parametrize("entity", ENTITIES)
def test_schema_drift_detected_by_a_connector_with_a_cached_schema(
    harness: Harness, entity: Entity
) -> None:
    harness.create(entity, 2)
    field = harness.writable_field(entity)
    connector = harness.connector()
    fields = list(harness.fields(entity))
    first = [r for p in connector.read(entity, None, fields) for r in p.records]
    assert len(first) >= 2  # the schema is now cached by this connector
    harness.drop_field(entity, field)

    stream = connector.read(entity, None, fields)
    with pytest.raises(SchemaDriftError) as err:
        next(stream)  # fails before any page: nothing reaches the store
    assert field in str(err.value)
    assert field in err.value.fields


def test_malformed_record_is_skipped_with_reason(harness: Harness) -> None:
    entity = Entity.OPPORTUNITY
    ids = harness.create(entity, 3)
    harness.corrupt(entity, ids[1])

    pages, _ = read_all(harness, entity)

    seen = latest(pages)
    skipped = [s for p in pages for s in p.skipped]
    assert ids[0] in seen and ids[2] in seen
    assert ids[1] not in seen
    assert [s.id for s in skipped if s.id == ids[1]] == [ids[1]]
    assert all(s.reason for s in skipped)


def test_errors_are_connector_errors(harness: Harness) -> None:
    harness.app.faults.rate_limit_all = True
    with pytest.raises(ConnectorError):
        read_all(harness, Entity.ACCOUNT)


def test_empty_entity_reads_as_one_complete_empty_page(harness: Harness) -> None:
    entity = Entity.OPPORTUNITY  # no harness seeds opportunities
    pages, cursor = read_all(harness, entity)

    assert pages and not records(pages), "an empty CRM object yields no records"
    assert pages[-1].complete and all(p.full_refresh for p in pages)
    assert not any(p.skipped for p in pages)
    assert cursor is not None

    again, cursor2 = read_all(harness, entity, cursor)
    assert not records(again) and again[-1].complete and cursor2 is not None
    created = harness.create(entity, 2)
    later, _ = read_all(harness, entity, cursor2)
    assert set(created) <= set(latest(later)), "the empty read's cursor still sees new records"


def test_timeouts_are_retried_then_bounded(harness: Harness) -> None:
    ids = harness.create(Entity.ACCOUNT, 3)
    faults = harness.app.faults

    def answer_quickly_again(_seconds: float) -> None:
        faults.latency_ms = 0  # the vendor recovers while we back off

    connector = harness.connector(timeout_s=0.2, retry=RetryPolicy(sleep=answer_quickly_again))
    fields = list(harness.fields(Entity.ACCOUNT))
    list(connector.read(Entity.ACCOUNT, None, fields))  # tokens and caches warm
    faults.latency_ms = 1000  # the server stops answering within the client's timeout
    with capture_logs() as logs:
        pages = list(connector.read(Entity.ACCOUNT, None, fields))
    assert set(ids) <= set(latest(pages))
    assert [e for e in logs if e["event"] == "retrying"], "the timeout went through the policy"

    slow = harness.connector(timeout_s=0.2, retry=RetryPolicy(attempts=2, sleep=lambda _s: None))
    list(slow.read(Entity.ACCOUNT, None, fields))
    faults.latency_ms = 1000
    harness.app.requests.reset()
    try:
        with pytest.raises(TransientError):
            list(slow.read(Entity.ACCOUNT, None, fields))
        assert harness.app.requests.count() <= 2, "a hung server costs a bounded few attempts"
    finally:
        faults.latency_ms = 0


def test_budget_share_stops_mid_pull_keeping_pages_and_resumes_next_cycle(
    harness: Harness,
) -> None:
    entity = Entity.ACCOUNT
    size = harness.min_page_size()
    created = harness.create(entity, 8 * size)
    fields = list(harness.fields(entity))
    # What one page costs at this vendor, and what comes before it (metadata, tokens).
    probe = harness.quota(share=1.0, limit=10**9)
    stream = harness.connector(page_size=size, quota=probe).read(entity, None, fields)
    next(stream)
    setup_and_page = probe.spent_here
    next(stream)
    page_cost = probe.spent_here - setup_and_page
    del stream  # abandoned mid-read, as a stopped cycle leaves it

    allowed = setup_and_page + 2 * page_cost  # three pages fit in the share, not all nine
    quota = harness.quota(share=0.25, limit=4 * allowed)
    connector = harness.connector(page_size=size, quota=quota)
    pages: list[Page] = []
    with pytest.raises(BudgetExhaustedError, match="resuming next cycle"):
        for page in connector.read(entity, None, fields):
            pages.append(page)

    assert pages and not pages[-1].complete, "stopped mid-pull, after some pages"
    got = latest(pages)
    assert set(got) <= set(created) | set(latest(read_all(harness, entity)[0]))
    assert all(r.modified_at and not r.deleted for r in got.values())
    status = connector.budget()
    assert status.share_limit == allowed and status.used <= allowed

    with pytest.raises(BudgetExhaustedError):  # the same cycle: still spent, no call made
        next(iter(connector.read(entity, pages[-1].cursor, fields)))

    harness.renew_budget()  # a later cycle of the same process, the vendor window moved on
    harness.app.requests.reset()
    resumed: list[Page] = []
    with contextlib.suppress(BudgetExhaustedError):  # may stop again: the share is small
        for page in connector.read(entity, pages[-1].cursor, fields):
            resumed.append(page)
    # (the lookback may spend this small share re-reading the newest records without news)
    assert harness.app.requests.count() > 0, "the same connector calls the vendor again"

    ample = harness.quota(share=1.0, limit=10**9)
    cursor = (resumed or pages)[-1].cursor
    rest = list(harness.connector(page_size=size, quota=ample).read(entity, cursor, fields))
    assert rest[-1].complete, "the cursor stored mid-pull leads to a complete read"
    assert set(created) <= set(latest([*pages, *resumed, *rest]))
