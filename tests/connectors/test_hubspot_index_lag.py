"""HubSpot search lags writes by seconds: what a read can miss, and what the next one reads.

The sandbox runs with a search index lag (a change becomes searchable some seconds after it
is made); ``catch_up_search_index`` stands for the lag passing. The connector's own clock
is moved forward to stand for the time between cycles.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest

import connectors.hubspot.api as hubspot_api
from connectors.base import Cursor, Entity, Page, RecordUpdate
from tests.connectors.harness_hubspot import HubSpotHarness, make_harness

LAG_S = 30.0  # the sandbox's index lag (search sees a change 15-30 s after it is made)
ALLOWANCE = timedelta(minutes=2)  # the connector's index lag allowance (its default)


@pytest.fixture
def h() -> Iterator[HubSpotHarness]:
    harness = make_harness(search_index_lag_s=LAG_S)
    try:
        yield harness
    finally:
        harness.stop()


def pull(h: HubSpotHarness, cursor: Cursor | None, *, later_s: float = 0.0,
         **options: Any) -> list[Page]:
    """One read of companies, as if ``later_s`` seconds had passed since now (on our clock
    and in the ``Date`` the server answers with)."""
    connector = h.connector(index_lag=ALLOWANCE, wall_clock=lambda: time.time() + later_s,
                            **options)
    served = hubspot_api.http_date

    def server_later(value: str | None) -> datetime | None:
        at = served(value)
        return None if at is None else at + timedelta(seconds=later_s)

    with patch.object(hubspot_api, "http_date", server_later):
        return list(connector.read(Entity.ACCOUNT, cursor, ["name", "domain"]))


def names(pages: list[Page]) -> dict[str, Any]:
    return {r.id: r.fields.get("name") for p in pages for r in p.records}


def rename(h: HubSpotHarness, record_id: str, name: str) -> None:
    """A person edits the record in HubSpot (each edit a later millisecond)."""
    time.sleep(0.002)
    h.account.update("companies", record_id, {"name": name})


def test_search_does_not_see_a_change_before_the_index_has_it(h: HubSpotHarness) -> None:
    created = h.create(Entity.ACCOUNT, 2)
    assert names(pull(h, None)) == {}  # nothing indexed yet
    h.app.catch_up_search_index()
    assert set(names(pull(h, None))) == {h.company, *created}


def test_an_edit_the_index_had_not_seen_is_read_by_the_next_cycle(h: HubSpotHarness) -> None:
    first_ids = h.create(Entity.ACCOUNT, 3)
    h.app.catch_up_search_index()
    first = pull(h, None)
    a, b = first_ids[0], first_ids[1]
    rename(h, a, "Edited first, indexed late")
    rename(h, b, "Edited second, indexed at once")  # later stamp than a's
    h.app.catch_up_search_index("companies", [b])
    second = pull(h, first[-1].cursor)
    assert names(second) == {b: "Edited second, indexed at once"}
    # the newest delivered stamp is now b's, after a's: a read from there would skip a
    assert second[-1].cursor["modified_ms"] > h.account.objects["companies"].records[
        int(a)].updated_ms
    h.app.catch_up_search_index()
    third = pull(h, second[-1].cursor, later_s=300)
    assert names(third) == {a: "Edited first, indexed late"}  # b is not delivered twice


def test_an_edit_during_our_write_back_is_read(h: HubSpotHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 150)
    h.app.catch_up_search_index()
    first = pull(h, None)
    connector = h.connector(index_lag=ALLOWANCE)
    half = len(ids) // 2
    connector.write(Entity.ACCOUNT, [RecordUpdate(id=i, fields={"domain": f"w{n}.example"})
                                     for n, i in enumerate(ids[:half])])
    rename(h, ids[3], "Renamed right after our write")  # one we wrote
    rename(h, ids[-1], "Renamed right after our write too")  # one we did not
    echoes = [i for i in ids[:half] if i != ids[3]]
    h.app.catch_up_search_index("companies", echoes)  # our echoes are searchable, not the edits
    second = pull(h, first[-1].cursor)
    assert set(names(second)) == set(ids[:half]) - {ids[3]}
    h.app.catch_up_search_index()
    third = pull(h, second[-1].cursor, later_s=5)  # the next cycle, right after
    assert names(third) == {ids[3]: "Renamed right after our write",
                            ids[-1]: "Renamed right after our write too"}


def test_echoes_are_paged_through_once(h: HubSpotHarness) -> None:
    ids = h.create(Entity.ACCOUNT, 450)
    h.app.catch_up_search_index()
    first = pull(h, None)
    h.connector().write(Entity.ACCOUNT, [RecordUpdate(id=i, fields={"domain": f"e{n}.example"})
                                         for n, i in enumerate(ids)])
    h.app.catch_up_search_index()
    # the daemon's next cycle, five minutes on, reads the echoes once
    echoes = pull(h, first[-1].cursor, later_s=300)
    assert len(names(echoes)) == len(ids)
    h.app.requests.reset()
    quiet = pull(h, echoes[-1].cursor, later_s=600)  # and the one after
    assert names(quiet) == {}
    assert h.app.requests.count("POST", "/search") == 1  # not three pages of echoes again
    # a read sent within the allowance of the writes cannot rule out having missed one:
    soon = pull(h, first[-1].cursor, later_s=10)
    h.app.requests.reset()
    assert names(pull(h, soon[-1].cursor, later_s=600)) == {}  # all known: none delivered
    assert h.app.requests.count("POST", "/search") == 3  # but its window is read again


def test_a_cursor_without_a_search_time_reads_back_the_allowance(h: HubSpotHarness) -> None:
    created = h.create(Entity.ACCOUNT, 2)
    h.app.catch_up_search_index()
    cursor = dict(pull(h, None)[-1].cursor)
    del cursor["searched_ms"]  # a cursor stored before the search time was kept
    cursor["recent"] = {}
    assert set(names(pull(h, cursor, later_s=3600))) == {h.company, *created}


def test_a_clock_running_ahead_of_hubspot_does_not_skip_an_edit(h: HubSpotHarness) -> None:
    first_ids = h.create(Entity.ACCOUNT, 2)
    h.app.catch_up_search_index()
    fast = h.connector(index_lag=ALLOWANCE, wall_clock=lambda: time.time() + 3600)
    first = list(fast.read(Entity.ACCOUNT, None, ["name"]))
    a, b = first_ids
    rename(h, a, "Indexed late")
    rename(h, b, "Indexed at once")
    h.app.catch_up_search_index("companies", [b])
    second = list(fast.read(Entity.ACCOUNT, first[-1].cursor, ["name"]))
    assert names(second) == {b: "Indexed at once"}
    h.app.catch_up_search_index()
    # the server's Date, not our clock an hour ahead, says when the search ran
    assert names(list(fast.read(Entity.ACCOUNT, second[-1].cursor, ["name"]))) == {
        a: "Indexed late"}
