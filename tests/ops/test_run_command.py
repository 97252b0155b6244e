"""``channelsync run`` start-up errors an operator can act on."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from cli.cycles import run_command
from tests.ops.support import ops_config, scenario_sandboxes, wiring_for


def test_a_taken_health_port_is_a_clear_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with scenario_sandboxes(tmp_path, customers=20) as sandboxes:
            config = ops_config(sandboxes, tmp_path / "cfg", schedule={"health_listen": listen})
            code = run_command(argparse.Namespace(), wiring_for(config))
    assert code == 2
    err = capsys.readouterr().err
    assert f"schedule.health_listen {listen}: cannot listen there" in err
