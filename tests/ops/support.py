"""Helpers for the operations tests: sandboxes, configs, daemon processes, waiting on conditions."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import requests

from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.core import Faults
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sync.cycle import CycleReport, run_cycle
from sync.evaluate import evaluate_store
from wiring import Wiring

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Generous: these are deadlines for conditions, not measurements (2 busy cores).
DEADLINE = 60.0


def wait_for(
    condition: Callable[[], T | None], *, what: str, deadline: float = DEADLINE, every: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline:.0f}s waiting for {what}")
        time.sleep(every)


@contextmanager
def scenario_sandboxes(
    tmp_path: Path, *, customers: int = 80, seed: int = 7, latency_ms: int = 0
) -> Iterator[SandboxSet]:
    world = generate(seed=seed, customers=customers)
    faults = {crm.connection: Faults(latency_ms=latency_ms) for crm in world.crms}
    sandboxes = start_world(world, tls_dir=tmp_path / "tls", faults=faults)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()


def set_latency(sandboxes: SandboxSet, latency_ms: int) -> None:
    for sandbox in sandboxes:
        sandbox.app.faults.latency_ms = latency_ms


def seeded_counts(sandboxes: SandboxSet) -> dict[tuple[str, str], int]:
    """(connection, entity) -> how many records the sandbox was seeded with."""
    counts: dict[tuple[str, str], int] = {}
    for crm in sandboxes.world.crms:
        counts[(crm.connection, "account")] = len(crm.accounts)
        counts[(crm.connection, "opportunity")] = len(crm.deals)
    return counts


def ops_config(
    sandboxes: SandboxSet,
    directory: Path,
    *,
    store_url: str | None = None,
    schedule: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``write_config`` plus schedule overrides and a log level that keeps the output short."""
    document: dict[str, Any] = {
        "schedule": {"cycle_interval": "1m", "health_listen": "127.0.0.1:0", **(schedule or {})},
        "logging": {"level": "INFO", "format": "json"},
        **(extra or {}),
    }
    return write_config(sandboxes, directory, store_url=store_url, extra=document)


def wiring_for(config: Path) -> Wiring:
    """In-process wiring whose connector retries do not sleep."""
    return Wiring(load_settings(config), sleep=lambda _seconds: None)


def cycle_without_push(wiring: Wiring) -> CycleReport:
    """Pull and evaluate (queueing writes in the outbox) but push nothing."""
    runtimes = wiring.runtimes()
    policy, match = wiring.policy(), wiring.match_settings()

    def evaluate(store: Any, at: datetime, _run_id: int) -> tuple[list[Any], dict[str, Any]]:
        outcome = evaluate_store(store, runtimes, policy=policy, match_settings=match, now=at,
                                 scorecards=wiring.scorecards())  # as a daemon's cycle does
        return outcome.planned, outcome.stats

    from cli.cycles import utcnow

    return run_cycle(
        store=wiring.store(),
        runtimes=runtimes,
        evaluate=evaluate,
        now=utcnow,
        backoff=wiring.backoff(),
        push=False,
        trigger="test without push",
    )


@dataclass(slots=True)
class DaemonProcess:
    """A ``channelsync`` subprocess with its output in files (no pipe can fill up)."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def health_port(self) -> int:
        def port() -> int | None:
            found = re.search(r"health and metrics on http://[^:]+:(\d+)/", self.output())
            if found is None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.output()[-3000:]}")
            return int(found.group(1)) if found else None

        return wait_for(port, what=f"process {self.pid} to print its health port")

    def healthz(self) -> tuple[int, dict[str, Any]]:
        response = requests.get(f"http://127.0.0.1:{self.health_port()}/healthz", timeout=5)
        return response.status_code, orjson.loads(response.content)

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, deadline: float = DEADLINE) -> int:
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running after {deadline:.0f}s:\n{self.output()[-3000:]}"
            ) from None

    def stop(self) -> None:
        """Cleanup: kill this process only, whatever state it is in."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def spawn(config: Path, *command: str, directory: Path, name: str) -> DaemonProcess:
    stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "--config", str(config), *command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    return DaemonProcess(process, stdout, stderr)


def run_to_end(config: Path, *command: str, directory: Path, name: str) -> tuple[int, str, str]:
    """Run a command to its end: (exit code, stdout, stdout and stderr)."""
    process = spawn(config, *command, directory=directory, name=name)
    try:
        code = process.wait()
    finally:
        process.stop()
    return code, process.stdout.read_text(errors="replace"), process.output()


class Concurrency:
    """Counts how many callers are inside at once, and the most ever seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entered = 0

    @contextmanager
    def enter(self) -> Iterator[None]:
        with self._lock:
            self.inside += 1
            self.entered += 1
            self.most = max(self.most, self.inside)
        try:
            yield
        finally:
            with self._lock:
                self.inside -= 1
