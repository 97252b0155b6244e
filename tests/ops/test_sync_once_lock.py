"""``sync --once`` takes the daemon's lock: a cycle by hand never runs beside another."""

from __future__ import annotations

from pathlib import Path

import pytest

import main
from config.loader import load_settings
from state import Store
from sync.leader import leadership_for
from tests.ops.support import ops_config, scenario_sandboxes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sync_once_refuses_while_another_process_holds_the_lock(
    backend: str, tmp_path: Path, empty_postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with scenario_sandboxes(tmp_path, customers=20) as sandboxes:
        config = ops_config(sandboxes, tmp_path / "cfg",
                            store_url=empty_postgres_url if backend == "postgresql" else None)
        store = Store.from_url(load_settings(config).store.url)
        store.migrate()
        daemon = leadership_for(store.engine)  # what a running daemon holds
        try:
            assert daemon.try_acquire()
            assert main.main(["--config", str(config), "sync", "--once"]) == 1
            assert "no second cycle was started" in capsys.readouterr().err
            assert store.recent_runs(limit=5) == []  # refused before any run began
            daemon.release()
            assert main.main(["--config", str(config), "sync", "--once"]) == 0
            assert [r.trigger for r in store.recent_runs(limit=5)] == ["sync --once"]
            assert daemon.try_acquire()  # and it let the lock go when it finished
        finally:
            daemon.release()
            store.close()
