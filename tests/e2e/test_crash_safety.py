"""A hard kill at any of 27 points of a cycle loses no record, skips no page, writes nothing twice.

Each kill point: fresh sandboxes of one small world and an empty store; ``channelsync
sync --once`` is killed (``os._exit(137)``) at the point; ``sync --once`` then runs twice
without a crash. The outcome is compared with an uncrashed reference of three runs:
the store equals a fresh full pull of the sandboxes (nothing lost or skipped, latest
values), every entity of every finished run read to its end and has a cursor, every CRM
field ends as in the reference, no record field received the same value twice, and the
last run writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.tls import ensure_tls
from sync.checkpoints import CRASH_EXIT_STATUS, CRASH_MARKER
from tests.e2e.crashlab import CrashLab, Play
from tests.e2e.support import duplicated, small_world

# Page and write-call numbers of the first cycle over the small world (5 connections in
# config order: sf-direct, d365-emea, hs-northwind, hs-brightline, pd-alpine). Pages 1-2
# Salesforce, 3-4 Dynamics, 5-8 and 9-12 the two HubSpot portals (two pages per entity),
# 13-14 Pipedrive; write calls 1-2 Salesforce, 3-4 Dynamics, 5-6 and 7-8 HubSpot, 9-10
# Pipedrive (accounts, then opportunities).
KILL_POINTS = [
    "cycle.started",
    "pull.before_page#1",
    "pull.page_stored#1",
    "pull.before_tombstones#2",
    "cycle.connection_pulled#1",
    "pull.before_page#4",
    "pull.page_stored#5",  # first of two pages of one entity
    "pull.before_page#8",
    "pull.page_stored#11",
    "pull.page_stored#14",
    "cycle.connection_pulled#5",
    "evaluate.links_saved",  # the full evaluation: links saved, no batch recorded yet
    "evaluate.batch_recorded#1",  # findings and writes queued, thresholds not yet saved
    "cycle.evaluated",
    "push.before_write#1",
    "push.written_not_booked#1",
    "push.booked#1",
    "push.written_not_booked#2",
    "cycle.connection_pushed#1",
    "push.written_not_booked#3",
    "push.before_write#6",
    "push.written_not_booked#6",
    "push.written_not_booked#8",
    "push.written_not_booked#9",
    "push.written_not_booked#10",
    "push.booked#10",
    "cycle.before_finish_run",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashLab]:
    root = tmp_path_factory.mktemp("crash")
    ensure_tls(root / "tls")  # once, before the plays start their sandboxes in parallel
    crash_lab = CrashLab(small_world(), root / "tls", root, KILL_POINTS)
    try:
        yield crash_lab
    finally:
        crash_lab.close()


@pytest.fixture(scope="module")
def reference(lab: CrashLab) -> Play:
    ref = lab.result(None)
    assert [r.code for r in ref.runs] == [0, 0, 0], [r.output[-2000:] for r in ref.runs]
    assert ref.writes[0], "the first cycle over the small world writes nothing: no test"
    assert ref.writes[1] == [] and ref.writes[2] == [], "an uncrashed second cycle wrote"
    assert ref.store == ref.fresh, "the uncrashed store differs from a fresh pull"
    return ref


def test_kill_points_are_distinct_and_enough() -> None:
    assert len(set(KILL_POINTS)) == len(KILL_POINTS) >= 20


@pytest.mark.parametrize("point", KILL_POINTS)
def test_crash_at_point_recovers_exactly(lab: CrashLab, reference: Play, point: str) -> None:
    result = lab.result(point)
    crashed, *after = result.runs
    assert crashed.code == CRASH_EXIT_STATUS, crashed.output[-3000:]
    assert f"{CRASH_MARKER} {point if '#' in point else point + '#1'}" in crashed.output
    for run in after:
        assert run.code == 0, run.output[-3000:]

    # no lost record, no skipped page, latest values: the store is a fresh full pull
    # (records the last run wrote to are read back only by the next pull: left out here)
    lost = sorted(set(result.fresh) - set(result.store))
    extra = sorted(set(result.store) - set(result.fresh))
    assert not lost and not extra, f"lost {lost[:5]}, extra {extra[:5]}"
    touched = {(w.connection, w.record_id) for w in result.writes[2]}  # seed keys
    stale = sorted(
        k for k in result.fresh
        if result.store[k] != result.fresh[k] and (k[0], result.seed_key(k)) not in touched
    )
    assert not stale, f"{len(stale)} records stored with old values, e.g. {stale[:5]}"
    assert len(result.store) == len(reference.store)

    # cursors: every entity has one, and every run after the crash read each to its end
    missing = sorted(k for k, v in result.cursors.items() if not v)
    assert not missing, f"no cursor for {missing}"
    assert len(result.pulled_complete) >= 2, "the recovery runs were not recorded as ok"
    for flags in result.pulled_complete[-2:]:
        assert len(flags) == len(result.cursors) and all(flags.values()), flags

    # the CRMs end exactly as after an uncrashed run
    differing = {
        k: (v, reference.crm.get(k)) for k, v in result.crm.items() if reference.crm.get(k) != v
    }
    assert result.crm.keys() == reference.crm.keys()
    assert not differing, f"{len(differing)} CRM fields differ: {list(differing.items())[:5]}"

    # no duplicated write effect; the last run writes nothing; nothing left in the outbox
    dupes = duplicated(result.all_writes)
    assert not dupes, f"{len(dupes)} values written twice, e.g. {dupes[:5]}"
    assert result.writes[2] == [], f"the third run wrote {result.writes[2][:5]}"
    # as many values stored as without the crash (vendor-native values, such as Pipedrive
    # option ids, differ between sandbox instances, so the count is what compares)
    assert len(result.all_writes) == len(reference.all_writes)
    assert set(result.outbox_states) <= {"sent"}, result.outbox_states


def test_checkpoints_are_silent_without_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sync import checkpoints

    monkeypatch.delenv(checkpoints.CRASH_ENV, raising=False)
    trail = tmp_path / "trail"
    monkeypatch.setenv(checkpoints.LOG_ENV, str(trail))
    checkpoints.checkpoint("cycle.started")
    monkeypatch.setenv(checkpoints.CRASH_ENV, "push.booked#2")
    checkpoints.checkpoint("cycle.started")  # another name: no crash
    assert trail.read_text().split() == ["cycle.started", "cycle.started"]
    assert checkpoints.parse_target("pull.page_stored#3") == ("pull.page_stored", 3)
    assert checkpoints.parse_target("cycle.started") == ("cycle.started", 1)
    with pytest.raises(ValueError, match="NAME#N"):
        checkpoints.parse_target("push.booked#0")
