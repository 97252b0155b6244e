"""Salesforce incremental reads across cycles: where the next read starts, what it skips.

SystemModstamp is set when a transaction starts; a long one commits after a query already
passed its stamp (emulated through the org's Python API with an earlier ``at``). The
connector's clock and the ``Date`` the server answers with are moved forward together to
stand for the time between cycles.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest

import connectors.salesforce.cursor as sf_cursor
from connectors.base import Cursor, Entity, Page, RecordUpdate
from tests.connectors.harness_salesforce import FIELDS, WRITABLE, SalesforceHarness

FIELD_NAMES = list(FIELDS[Entity.ACCOUNT])


@pytest.fixture
def h() -> Iterator[SalesforceHarness]:
    harness = SalesforceHarness()
    yield harness
    harness.stop()


def pull(h: SalesforceHarness, cursor: Cursor | None, *, later_s: float = 0.0,
         ahead_s: float = 0.0, **options: Any) -> list[Page]:
    """One read of accounts as if ``later_s`` seconds had passed (on our clock and in the
    server's ``Date``), with our clock a further ``ahead_s`` ahead of the org's."""
    ours = timedelta(seconds=later_s + ahead_s)
    connector = h.connector(clock=lambda: datetime.now(UTC) + ours, **options)
    served = sf_cursor.http_date

    def server_later(value: str | None) -> datetime | None:
        at = served(value)
        return None if at is None else at + timedelta(seconds=later_s)

    with patch.object(sf_cursor, "http_date", server_later):
        return list(connector.read(Entity.ACCOUNT, cursor, FIELD_NAMES))


def names(pages: list[Page]) -> dict[str, Any]:
    return {r.id: r.fields.get("Name") for p in pages for r in p.records}


def stamp(h: SalesforceHarness, record_id: str) -> str:
    row = h.app.org.get("Account", record_id)
    assert row is not None
    return str(row["SystemModstamp"])


def seed(h: SalesforceHarness, count: int) -> list[str]:
    """Accounts last changed an hour ago (one second, so the full read's newest)."""
    return h.create(Entity.ACCOUNT, count,
                    modified_at=datetime.now(UTC) - timedelta(hours=1))


def edit_later(h: SalesforceHarness, record_id: str, name: str, later_s: float) -> None:
    """A person's edit ``later_s`` seconds from now (a later cycle's time)."""
    at = datetime.now(UTC) + timedelta(seconds=later_s)
    h.app.org.update("Account", record_id, {"Name": name}, at=at)


def write_back(h: SalesforceHarness, ids: list[str]) -> None:
    results = h.connector().write(Entity.ACCOUNT, [
        RecordUpdate(id=i, fields={WRITABLE: f"written {n}"}) for n, i in enumerate(ids)])
    assert all(r.ok for r in results)


def test_an_edit_right_after_our_write_back_is_read(h: SalesforceHarness) -> None:
    ids = seed(h, 4)
    first = pull(h, None)
    write_back(h, ids[:2])
    h.modify(Entity.ACCOUNT, ids[1], "Name", "Renamed after our write")  # one we wrote
    h.modify(Entity.ACCOUNT, ids[3], "Name", "Renamed too")  # one we did not
    second = pull(h, first[-1].cursor, later_s=300)
    assert names(second) == {ids[0]: "Harness Account 0", ids[1]: "Renamed after our write",
                             ids[3]: "Renamed too"}
    # the second read came within the lookback of the edits: the third reads that span
    # again, and may deliver the newest second's again (at least once); then nothing
    third = pull(h, second[-1].cursor, later_s=602)
    assert set(names(third)) <= {ids[3]}
    assert names(pull(h, third[-1].cursor, later_s=904)) == {}


def test_a_long_transaction_committed_after_our_query_is_read_next_cycle(
    h: SalesforceHarness,
) -> None:
    ids = seed(h, 3)
    first = pull(h, None)
    h.modify(Entity.ACCOUNT, ids[2], "Name", "Quick edit")
    second = pull(h, first[-1].cursor, later_s=60)
    assert names(second) == {ids[2]: "Quick edit"}
    # a transaction that began two minutes before the quick edit commits only now
    began = datetime.fromisoformat(stamp(h, ids[2])) - timedelta(minutes=2)
    h.app.org.update("Account", ids[0], {"Name": "Long transaction"}, at=began)
    assert stamp(h, ids[0]) < second[-1].cursor["since"]  # older than the newest delivered
    third = pull(h, second[-1].cursor, later_s=120)
    # (the quick edit, in the newest delivered second, may come again: at least once)
    assert names(third).get(ids[0]) == "Long transaction" and ids[1] not in names(third)


def test_echoes_of_a_write_back_are_read_once(h: SalesforceHarness) -> None:
    ids = seed(h, 450)
    first = pull(h, None, page_size=200)
    write_back(h, ids)
    # the next cycle starts within the lookback of our writes: it cannot rule out having
    # missed a transaction that began before them, so the one after reads that span again
    echoes = pull(h, first[-1].cursor, later_s=10, page_size=200)
    assert set(names(echoes)) == set(ids)
    again = pull(h, echoes[-1].cursor, later_s=302, page_size=200)
    # the span is read again (the lookback), but what was delivered, as it is now, is not
    # delivered twice
    assert names(again) == {}
    h.app.requests.reset()
    quiet = pull(h, again[-1].cursor, later_s=604, page_size=200)
    assert names(quiet) == {}
    assert h.app.requests.count("GET", "/query") == 1  # one empty query, not 3 pages of echoes
    edit_later(h, ids[7], "Edited later", 700)
    assert names(pull(h, quiet[-1].cursor, later_s=906, page_size=200)) == {
        ids[7]: "Edited later"}


def test_a_second_version_within_the_same_second_is_delivered(h: SalesforceHarness) -> None:
    """A record changed twice in one second keeps its stamp: the read after the first
    change delivers it again because its fields differ, and only then."""
    ids = seed(h, 3)
    first = pull(h, None)
    write_back(h, ids)
    echoes = pull(h, first[-1].cursor, later_s=10)
    assert set(names(echoes)) == set(ids)
    same_second = datetime.fromisoformat(stamp(h, ids[1]))
    h.app.org.update("Account", ids[1], {"Name": "Second version"}, at=same_second)
    assert stamp(h, ids[1]) == echoes[-1].cursor["recent"][ids[1]].split()[0]
    again = pull(h, echoes[-1].cursor, later_s=302)
    assert names(again) == {ids[1]: "Second version"}
    assert names(pull(h, again[-1].cursor, later_s=604)) == {}


def test_a_clock_running_ahead_of_salesforce_does_not_skip_an_edit(
    h: SalesforceHarness,
) -> None:
    ids = seed(h, 3)
    hour = 3600.0
    first = pull(h, None, ahead_s=hour)
    h.modify(Entity.ACCOUNT, ids[1], "Name", "Edited")
    second = pull(h, first[-1].cursor, ahead_s=hour)
    assert names(second) == {ids[1]: "Edited"}
    began = datetime.fromisoformat(stamp(h, ids[1])) - timedelta(minutes=2)
    h.app.org.update("Account", ids[0], {"Name": "Long transaction"}, at=began)
    # the server's Date, not our clock an hour ahead, says when the query was sent
    third = pull(h, second[-1].cursor, later_s=60, ahead_s=hour)
    assert names(third).get(ids[0]) == "Long transaction"


def test_a_cursor_without_a_query_time_reads_back_the_lookback(h: SalesforceHarness) -> None:
    ids = seed(h, 2)
    cursor = dict(pull(h, None)[-1].cursor)
    del cursor["queried"]  # a cursor stored before the query time was kept
    began = datetime.fromisoformat(str(cursor["since"])) - timedelta(minutes=4)
    h.app.org.update("Account", ids[0], {"Name": "Long transaction"}, at=began)
    got = pull(h, cursor, later_s=3600)
    assert names(got).get(ids[0]) == "Long transaction"
    assert got[-1].cursor["queried"] is not None  # and the next cursor has one


def test_the_server_date_bounds_when_the_query_was_sent() -> None:
    sent = datetime(2026, 3, 1, 12, 0, 30, 500_000, tzinfo=UTC)
    assert sf_cursor.query_sent(sent, None, 0.2) == "2026-03-01T12:00:30.000+0000"
    # an hour ahead of the server, whose answer came 2.5 s after we sent the query
    ahead = sent + timedelta(hours=1)
    assert sf_cursor.query_sent(ahead, "Sun, 01 Mar 2026 12:00:33 GMT",
                                2.5) == "2026-03-01T12:00:30.000+0000"
    assert sf_cursor.query_sent(sent, "not a date", 1.0) == "2026-03-01T12:00:30.000+0000"
