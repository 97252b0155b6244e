"""The Dockerfile's HEALTHCHECK works against the real endpoint; the systemd unit is coherent."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from sync.metrics import Health, Metrics, serve_http
from tests.ops.support import REPO


def dockerfile_instruction(name: str) -> str:
    """The text of one instruction, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    found = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    assert len(found) == 1, f"expected one {name} in the Dockerfile, found {len(found)}"
    return found[0][len(name) + 1 :].strip()


def healthcheck_argv() -> list[str]:
    instruction = dockerfile_instruction("HEALTHCHECK")
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", instruction)
    assert match, instruction
    argv = json.loads(match.group(1))
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.fixture
def health_server() -> Iterator[tuple[Health, str]]:
    health = Health(connections=["crm"], stale_after=timedelta(hours=1))
    server, thread = serve_http(host="127.0.0.1", port=0, metrics=Metrics(), health=health)
    try:
        yield health, f"http://127.0.0.1:{server.server_port}/healthz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_check(url: str) -> int:
    env = {**os.environ, "CHANNELSYNC_HEALTH_URL": url}
    return subprocess.run(healthcheck_argv(), env=env, capture_output=True, timeout=60).returncode


def test_docker_healthcheck_fails_until_ready_then_passes(
    health_server: tuple[Health, str],
) -> None:
    health, url = health_server
    assert run_check(url) != 0  # starting: the first cycle has not finished
    health.succeeded("crm", health.clock())
    health.ready = True
    assert run_check(url) == 0
    health.active = False  # an HA standby is healthy too
    health.ready = False
    assert run_check(url) == 0


def test_dockerfile_runs_the_daemon_as_a_non_root_user() -> None:
    assert dockerfile_instruction("FROM") == "python:3.11-slim"
    assert dockerfile_instruction("USER") not in ("root", "0")
    assert json.loads(dockerfile_instruction("CMD")) == ["channelsync", "run"]
    assert "8787" in dockerfile_instruction("EXPOSE")


def test_systemd_unit_runs_the_daemon_with_secrets_from_an_environment_file() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string((REPO / "deploy" / "channelsync.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[-1] == "run"
    assert service["ExecStart"].split()[0].endswith("/channelsync")
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad config is not retried forever
    assert service["User"] not in ("root", "0")
    assert service["EnvironmentFile"].startswith("/etc/channelsync/")
    assert service["KillSignal"] == "SIGTERM"
    assert service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
