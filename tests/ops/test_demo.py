"""``channelsync demo`` from a fresh directory, as the README tells a new user to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

import main


def test_demo_runs_both_cycles_and_points_to_what_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main.main(["demo"]) == 0
    out = capsys.readouterr().out
    workdir = tmp_path / ".channelsync" / "demo"
    assert (workdir / "channelsync.db").stat().st_size > 0
    assert "<svg" in (workdir / "scorecards.html").read_text()
    for expected in ("run 1: ", "run 2: ", "What Channel Sync found",
                     "Which distributors really sell", "paper partner",
                     "CONFIG=.channelsync/demo/channelsync.yaml",
                     "channelsync --config $CONFIG status",
                     "channelsync --config $CONFIG report scorecards",
                     str(workdir / "scorecards.html")):
        assert expected in out, expected
    # the commands to copy are printed whole, never wrapped mid-command
    assert "\n  channelsync --config $CONFIG review            # uncertain matches\n" in out
