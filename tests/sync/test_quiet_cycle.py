"""A cycle after the one that read our own writes back re-evaluates nothing: those rows were
evaluated by that cycle, and nothing changed since."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.launch import start_world
from sandbox.scenario import generate
from state.base import utcnow
from sync.evaluate import evaluate_store
from wiring import Wiring


def test_no_change_cycle_after_the_echoes_evaluates_no_customer(tmp_path: Path) -> None:
    world = generate(seed=7, customers=40, now=datetime(2026, 11, 26, tzinfo=UTC))
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    wiring = Wiring(load_settings(write_config(sandboxes, tmp_path)))
    try:
        first = one_cycle(wiring)
        assert first.stats["evaluation"] == "full" and first.stats["queued"] > 0
        echoes = one_cycle(wiring)  # reads our writes back: those rows are touched
        assert echoes.stats["customers"] > 0
        quiet = one_cycle(wiring)
        assert quiet.stats["evaluation"] == "incremental"
        assert quiet.stats["customers"] == 0 and quiet.stats["queued"] == 0
        # a person's edit after that is still seen
        app: Any = sandboxes["sf-direct"].app
        deal = next(r["Id"] for r in app.org.tables["Opportunity"].values()
                    if not r["IsDeleted"])
        app.org.update("Opportunity", deal, {"Amount": 123456})
        assert one_cycle(wiring).stats["changed_records"] >= 1
    finally:
        wiring.close()
        sandboxes.stop()


def test_a_dry_run_before_the_echoes_are_read_plans_what_one_after_does(
        tmp_path: Path) -> None:
    """``channelsync plan --no-pull`` straight after a cycle: the store shows what that
    cycle wrote (not the values its pull read before), so nothing is planned again and no
    write of ours is taken for a person's edit."""
    world = generate(seed=7, customers=40, now=datetime(2026, 11, 26, tzinfo=UTC))
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    wiring = Wiring(load_settings(write_config(sandboxes, tmp_path)))

    def dry_run() -> tuple[list[Any], list[Any]]:
        outcome = evaluate_store(
            wiring.store(), wiring.runtimes(), policy=wiring.policy(),
            match_settings=wiring.match_settings(), now=utcnow(), record=False,
            scorecards=wiring.scorecards())
        return (sorted(map(repr, outcome.planned)),
                sorted((h.connection, h.external_id, h.field, h.why) for h in outcome.held))

    try:
        first = one_cycle(wiring)
        assert first.stats["queued"] > 0
        assert not wiring.store().outbox_items(state="pending")  # every write went
        before_echoes = dry_run()
        one_cycle(wiring)  # reads the echoes
        after_echoes = dry_run()
        assert before_echoes == after_echoes
        assert before_echoes[0] == []
        assert not [h for h in before_echoes[1] if "since Channel Sync wrote it" in h[3]]
    finally:
        wiring.close()
        sandboxes.stop()


def test_cycles_faster_than_the_search_index_write_nothing_twice(tmp_path: Path) -> None:
    """HubSpot's search sees a change seconds after it is made: a cycle that starts
    before our writes are indexed reads the records as they were before them. It must
    not write the same values again (it did: hundreds of duplicate writes per cycle)."""
    world = generate(seed=7, customers=40, now=datetime(2026, 11, 26, tzinfo=UTC))
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    hubspot = [sb for sb in sandboxes if hasattr(sb.app, "set_search_index_lag")]
    assert hubspot
    for sb in hubspot:
        sb.app.set_search_index_lag(30.0)  # longer than the cycles below take
    wiring = Wiring(load_settings(write_config(sandboxes, tmp_path)))
    try:
        def hubspot_writes() -> int:
            return sum(sb.app.requests.count("PATCH") + sb.app.requests.count(
                "POST", "batch/update") for sb in hubspot)

        first = one_cycle(wiring)
        assert first.stats["queued"] > 0 and hubspot_writes() > 0
        written = hubspot_writes()
        for _ in range(2):
            again = one_cycle(wiring)
            assert again.stats["queued"] == 0
        assert hubspot_writes() == written
    finally:
        wiring.close()
        sandboxes.stop()
