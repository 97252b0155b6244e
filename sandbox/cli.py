"""``channelsync sandbox serve``: start the scenario's sandboxes and run until stopped."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import yaml

from sandbox.launch import LaunchError, SandboxSet, start_native, start_world
from sandbox.scenario import generate, load_fixture_world
from sandbox.worldio import FixtureError

DEFAULT_TLS_DIR = Path(os.environ.get("CHANNELSYNC_SANDBOX_TLS_DIR", ".channelsync/sandbox-tls"))


def serve_command(
    vendors: Sequence[str] | None,
    seed: int,
    customers: int,
    fixture: Path | None,
    as_json: bool,
    *,
    tls_dir: Path | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Start sandboxes, print how to reach them, block until SIGINT/SIGTERM; exit code.

    ``fixture`` is a world fixture (:mod:`sandbox.worldio`) or a native fixture (a
    ``sandboxes`` list, see :func:`sandbox.launch.start_native`), both described in
    ``sandbox/FIXTURES.md`` with the faults each sandbox starts with; without it the
    scenario is generated from ``seed`` and ``customers``. ``stop_event`` lets a caller (a
    test) stop the command without a signal.
    """
    wanted = list(vendors) if vendors else None
    # absolute, so the printed CA file works from any directory
    tls = Path(tls_dir or DEFAULT_TLS_DIR).resolve()
    try:
        native = _native_entries(fixture) if fixture else None
        faults = _start_faults(fixture, native) if fixture else {}
        if native is not None:
            running = start_native(native, vendors=wanted, tls_dir=tls)
        else:
            world = load_fixture_world(fixture) if fixture else generate(seed=seed,
                                                                         customers=customers)
            running = start_world(world, vendors=wanted, tls_dir=tls)
    except (FixtureError, LaunchError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    try:  # before anything is printed, so no client sees the sandboxes without their faults
        _apply_faults(running, faults, fixture)
    except FixtureError as exc:
        running.stop()
        print(f"error: {exc}")
        return 2
    stop = stop_event or threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        print(render(running, as_json=as_json), flush=True)
        stop.wait()
    finally:
        _restore_signal_handlers(previous)
        running.stop()
    return 0


def _native_entries(path: Path) -> list[dict[str, Any]] | None:
    """The ``sandboxes`` list of a native fixture file; None for a world fixture."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: cannot read fixture: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("sandboxes"), list):
        return list(data["sandboxes"])
    return None


def _start_faults(path: Path, native: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Faults each connection starts with: a native entry's ``faults``, or a top-level
    ``faults`` mapping (connection -> settings) in either fixture format."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    out: dict[str, Any] = {}
    top = data.get("faults") if isinstance(data, dict) else None
    if top is not None and not isinstance(top, dict):
        raise FixtureError(f"{path}: 'faults' must map connection names to fault settings")
    out.update(top or {})
    for n, entry in enumerate(native or []):
        if isinstance(entry, dict) and entry.get("faults") is not None:
            out[str(entry.get("connection", f"sandboxes[{n}]"))] = entry["faults"]
    return out


def _apply_faults(running: SandboxSet, faults: dict[str, Any], path: Path | None) -> None:
    for connection, settings in faults.items():
        if connection not in running.sandboxes:
            served = ", ".join(running.sandboxes) or "none"
            raise FixtureError(f"{path}: faults for unknown connection {connection!r} "
                               f"(serving: {served})")
        if not isinstance(settings, dict):
            raise FixtureError(f"{path}: faults of {connection!r} must be a mapping")
        try:
            running[connection].app.faults.update(dict(settings))
        except (KeyError, TypeError, ValueError) as exc:
            raise FixtureError(f"{path}: faults of {connection!r}: unknown or bad setting "
                               f"{exc}") from exc


def render(running: SandboxSet, *, as_json: bool) -> str:
    description = running.describe()
    if as_json:
        return orjson.dumps(description, option=orjson.OPT_INDENT_2).decode()
    lines = [f"Channel Sync sandboxes (seed {description['seed']}, now {description['now']}):"]
    for box in description["sandboxes"]:
        lines.append(f"\n{box['connection']}  [{box['vendor']}, {box['role']}"
                     + (f", {box['distributor_id']}" if box["distributor_id"] else "") + "]")
        lines.append(f"  base URL : {box['base_url']}")
        if box["ca_file"]:
            lines.append(f"  CA file  : {box['ca_file']}")
        for key, value in box["credentials"].items():
            lines.append(f"  {key:<9}: {_short(value)}")
    lines.append("\nPress Ctrl-C to stop.")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = str(value)
    if "\n" in text:  # PEM blocks: the JSON output carries them whole
        return text.splitlines()[0] + " ... (see --json)"
    return text


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
