"""The CLI's exit codes: 0 ok, 2 bad config or usage (nothing touched), 1 a failed run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import main
from tests.config.helpers import ENV, write_config

GOOD = """
store:
  url: sqlite:///{db}
connections:
  - name: hs-one
    vendor: hubspot
    role: distributor
    distributor_id: acme
    auth: {{token: "${{HS_TOKEN}}"}}
    mapping: hs.yaml
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_check_config_ok(tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.db"
    path = write_config(tmp_path, GOOD.format(db=db))
    assert main.main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"OK: 1 connection (1 enabled), store sqlite:///{db}"
    assert "hs-one: hubspot, distributor acme; mapping" in out
    assert not db.exists()


def test_check_config_errors_exit_2_and_touch_nothing(
    tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.db"
    path = write_config(tmp_path, GOOD.format(db=db).replace("role: distributor", "role: boss"))
    assert main.main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6 connections[0].role: 'boss' is not one of internal, distributor" in err
    assert not db.exists()


def test_config_from_environment_variable(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANNELSYNC_CONFIG", str(tmp_path / "missing.yaml"))
    assert main.main(["check-config"]) == 2
    path = write_config(tmp_path, GOOD.format(db=tmp_path / "x.db"))
    monkeypatch.setenv("CHANNELSYNC_CONFIG", str(path))
    assert main.main(["check-config"]) == 0


def test_online_check_says_which_crm_it_cannot_reach(
    tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    text = GOOD.format(db=tmp_path / "x.db").replace(
        "    mapping: hs.yaml", f"    mapping: hs.yaml\n    base_url: http://127.0.0.1:{port}"
    )
    path = write_config(tmp_path, text)
    assert main.main(["--config", str(path), "check-config", "--online"]) == 2
    err = capsys.readouterr().err
    assert "hs-one: cannot reach the CRM" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--once"],
        ["run"],
        ["plan", "--json"],
        ["status"],
        ["review"],
        ["report", "scorecards", "--format", "json"],
    ],
)
def test_store_commands_refuse_a_missing_config_before_touching_the_store(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere.yaml"
    assert main.COMMANDS[main.build_parser().parse_args(argv).command_key].needs_config
    assert main.main(["--config", str(missing), *argv]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [[], ["bogus"], ["sync", "--twice"], ["sandbox", "serve", "x"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert main.main(argv) == 2


def test_every_subcommand_has_help_with_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["check-config"],
        ["sync"],
        ["run"],
        ["plan"],
        ["status"],
        ["review"],
        ["demo"],
        ["sandbox", "serve"],
        ["report", "scorecards"],
    ):
        assert main.main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert "exit codes:" in out and "3    not implemented yet" in out, argv


def test_handlers_can_be_plugged_in(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def fake_status(args: object, settings: object) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setitem(main.COMMANDS, "status", main.Command(fake_status))
    path = write_config(tmp_path, GOOD.format(db=tmp_path / "x.db"))
    assert main.main(["--config", str(path), "status"]) == 0
    assert len(seen) == 1 and seen[0] is not None


def test_python_main_py_runs_from_a_checkout(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            str(root / "main.py"),
            "--config",
            str(tmp_path / "none.yaml"),
            "check-config",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"{tmp_path}/none.yaml: config file does not exist")
