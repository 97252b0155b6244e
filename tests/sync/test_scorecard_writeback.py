"""Scorecard headlines reach each distributor's partner account in the manufacturer's CRM
through the normal plan/outbox path, and never a distributor's CRM."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sync.evaluate import stored_scorecards
from wiring import Wiring

FIELDS = ("Scorecard_Win_Rate__c", "Scorecard_Active_Registrations__c", "Scorecard_Verdict__c")


@pytest.fixture()
def wiring(tmp_path: Path) -> Iterator[tuple[Wiring, SandboxSet]]:
    world = generate(seed=5, customers=60, now=datetime(2026, 11, 26, tzinfo=UTC))
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    w = Wiring(load_settings(write_config(sandboxes, tmp_path)))
    try:
        yield w, sandboxes
    finally:
        w.close()
        sandboxes.stop()


def test_headline_figures_land_on_partner_accounts_only(wiring: tuple[Wiring, Any]) -> None:
    w, sandboxes = wiring
    assert one_cycle(w).ok
    org = sandboxes["sf-direct"].app.org
    partners = {
        row["Distributor_Id__c"]: row
        for row in org.tables["Account"].values()
        if row.get("Distributor_Id__c")
    }
    store = w.store()
    report = stored_scorecards(store, w.runtimes(), policy=w.policy(), now=datetime.now(UTC),
                               config=w.scorecards())
    assert report.scorecards
    for card in report.scorecards:
        row = partners[card.distributor_id]
        assert row["Scorecard_Active_Registrations__c"] == card.active_registrations
        verdict = {
            "healthy": "Healthy",
            "paper_partner": "Paper partner",
            "insufficient_data": "Insufficient data",
        }[card.verdict]
        assert row["Scorecard_Verdict__c"] == verdict
        if card.win_rate_registered is not None:
            assert abs(row["Scorecard_Win_Rate__c"] - float(card.win_rate_registered)) < 1e-9
    customers = [r for r in org.tables["Account"].values() if not r.get("Distributor_Id__c")]
    assert all(r.get("Scorecard_Verdict__c") is None for r in customers)
    for connection in ("hs-northwind", "hs-brightline", "pd-alpine"):
        sent = store.outbox_items(connection=connection, limit=100_000)
        assert not [o for o in sent if "corecard" in o.field], connection
