"""A person clears a flag Channel Sync owns: the next (incremental) cycle puts it back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.launch import start_world
from sandbox.scenario import generate
from wiring import Wiring


def test_middleware_owned_flag_edited_by_a_person_is_restored(tmp_path: Path) -> None:
    world = generate(seed=7, customers=60, now=datetime(2026, 11, 26, tzinfo=UTC))
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    wiring = Wiring(load_settings(write_config(sandboxes, tmp_path)))
    try:
        assert one_cycle(wiring).stats["evaluation"] == "full"
        one_cycle(wiring)  # our own echo
        app: Any = sandboxes["sf-direct"].app  # the Salesforce sandbox and its user API
        org = app.org
        flagged = next(
            r["Id"]
            for r in org.tables["Opportunity"].values()
            if r.get("Channel_Conflict__c") is True and not r["IsDeleted"]
        )
        org.update("Opportunity", flagged, {"Channel_Conflict__c": False})

        report = one_cycle(wiring)

        assert report.stats["evaluation"] == "incremental"
        assert org.get("Opportunity", flagged)["Channel_Conflict__c"] is True
        assert one_cycle(wiring).stats.get("queued", 0) == 0
    finally:
        wiring.close()
        sandboxes.stop()
