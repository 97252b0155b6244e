"""Helpers for the end-to-end tests: a small world's sandboxes, write taps, CRM read-back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cli.democonfig import write_config
from config.loader import load_settings
from connectors.base import Entity
from sandbox.launch import LaunchedSandbox, SandboxSet, start_world
from sandbox.scenario import generate
from sandbox.world import World
from wiring import Wiring

REPO = Path(__file__).resolve().parents[2]
# Channel managers as the scenario's ground truth names them (``routed_to``).
MANAGERS = {"sf-direct": "sf-u-cm", "d365-emea": "d365-u-cm"}
SUBPROCESS_DEADLINE = 120.0

# vendor -> entity -> the vendor object the sandbox keeps it in
NATIVE_OBJECT = {
    "salesforce": {"account": "Account", "opportunity": "Opportunity"},
    "hubspot": {"account": "companies", "opportunity": "deals"},
    "pipedrive": {"account": "organizations", "opportunity": "deals"},
    "dynamics": {"account": "account", "opportunity": "opportunity"},
}


def small_world(*, seed: int = 7, customers: int = 40, now: datetime | None = None) -> World:
    """The scenario at a fixed instant (midnight UTC today unless given)."""
    at = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return generate(seed=seed, customers=customers, now=at)


@contextmanager
def running_world(world: World, tls_dir: Path) -> Iterator[SandboxSet]:
    sandboxes = start_world(world, tls_dir=tls_dir)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()


def config_for(sandboxes: SandboxSet, directory: Path) -> Path:
    return write_config(sandboxes, directory, channel_managers=dict(MANAGERS))


def wiring_for(config: Path) -> Wiring:
    # real sleeps: the HubSpot sandbox enforces its per-second search limit, as HubSpot does
    return Wiring(load_settings(config))


# -- running the real command ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finished:
    code: int
    output: str


def run_sync_once(config: Path, *, crash_at: str | None = None) -> Finished:
    """``python main.py --config X sync --once`` as its own process (optionally crashing)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("CHANNELSYNC_CRASH_AT", None)
    if crash_at is not None:
        env["CHANNELSYNC_CRASH_AT"] = crash_at
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--config", str(config), "sync", "--once"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=SUBPROCESS_DEADLINE,
        check=False,
    )
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    return Finished(done.returncode, output)


# -- every write the CRMs receive -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Write:
    """One field value a sandbox stored through its API (vendor-native form)."""

    connection: str
    obj: str
    record_id: str
    field: str
    value: Any


@dataclass(slots=True)
class WriteTap:
    """Wraps each sandbox's API write path and records every field value it stores."""

    writes: list[Write] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self) -> int:
        with self._lock:
            return len(self.writes)

    def since(self, mark: int) -> list[Write]:
        with self._lock:
            return list(self.writes[mark:])

    def _add(self, connection: str, obj: str, record_id: str, values: dict[str, Any]) -> None:
        with self._lock:
            for name, value in values.items():
                self.writes.append(Write(connection, obj, str(record_id), name, _hashable(value)))

    def install(self, sandboxes: SandboxSet) -> WriteTap:
        for sb in sandboxes:
            getattr(self, f"_tap_{sb.vendor}")(sb)
        return self

    def _tap_salesforce(self, sb: LaunchedSandbox) -> None:
        org: Any = sb.app.org  # type: ignore[attr-defined]  # the Salesforce app's org
        original = org.update

        def update(obj_name: str, record_id: str, values: Any, **kw: Any) -> Any:
            row = original(obj_name, record_id, values, **kw)
            self._add(sb.connection, obj_name, row["Id"], dict(values))
            return row

        org.update = update

    def _tap_hubspot(self, sb: LaunchedSandbox) -> None:
        account: Any = sb.app.account  # type: ignore[attr-defined]  # the HubSpot portal data
        original = account.apply_properties

        def apply_properties(store: Any, rec: Any, properties: Any, *, system: bool) -> None:
            original(store, rec, properties, system=system)
            if not system:  # API writes; user edits in tests pass system=True
                self._add(sb.connection, store.name, str(rec.id), dict(properties))

        account.apply_properties = apply_properties

    def _tap_pipedrive(self, sb: LaunchedSandbox) -> None:
        company: Any = sb.app.company  # type: ignore[attr-defined]  # the Pipedrive company
        original = company.update

        def update(entity: str, record_id: int, values: dict[str, Any]) -> Any:
            rec = original(entity, record_id, values)
            flat = {k: v for k, v in values.items() if k != "custom_fields"}
            flat.update(values.get("custom_fields") or {})
            self._add(sb.connection, entity, str(record_id), flat)
            return rec

        company.update = update

    def _tap_dynamics(self, sb: LaunchedSandbox) -> None:
        store: Any = sb.app.store  # type: ignore[attr-defined]  # the Dataverse tables
        original = store.update

        def update(logical: str, record_id: str, values: Any, **kw: Any) -> Any:
            row = original(logical, record_id, values, **kw)
            self._add(sb.connection, logical, record_id, dict(values))
            return row

        store.update = update


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def duplicated(writes: list[Write]) -> list[Write]:
    """Writes that store a value the same record field already received from us."""
    seen: set[Write] = set()
    dupes: list[Write] = []
    for w in writes:
        if w in seen:
            dupes.append(w)
        seen.add(w)
    return dupes


# -- what a CRM shows, read from the sandbox's own data ---------------------------------
@dataclass(slots=True)
class CrmView:
    """Reads write-back fields from each sandbox's own data (never from our store)."""

    sandboxes: SandboxSet
    mappings: dict[str, Any]  # connection -> compiled mapping

    @classmethod
    def of(cls, sandboxes: SandboxSet, config: Path) -> CrmView:
        settings = load_settings(config)
        return cls(sandboxes, {c.name: c.mapping for c in settings.connections})

    def field(self, connection: str, entity: str, output: str) -> str | None:
        """The vendor field the mapping writes ``output`` to (None: not written there)."""
        spec = self.mappings[connection].writes(Entity(entity)).get(output)
        return spec.field if spec is not None else None

    def value(self, connection: str, entity: str, record_id: str, output: str) -> Any:
        """What a CRM user sees in the field ``output`` is written to, normalised: booleans
        as bool, option sets and statuses as lower-case text, dates as ``date``."""
        sb = self.sandboxes[connection]
        name = self.field(connection, entity, output)
        if name is None:
            raise AssertionError(f"{connection} has no {entity} field for {output}")
        return normalise(output, native_value(sb, entity, record_id, name))

    def values(self, connection: str, entity: str, record_id: str) -> dict[str, Any]:
        outputs = self.mappings[connection].writes(Entity(entity))
        return {o: self.value(connection, entity, record_id, o) for o in outputs}


def native_value(sb: LaunchedSandbox, entity: str, record_id: str, name: str) -> Any:
    app: Any = sb.app
    obj = NATIVE_OBJECT[sb.vendor][entity]
    if sb.vendor == "salesforce":
        row = app.org.get(obj, record_id)
        assert row is not None, f"{sb.connection} {obj} {record_id} does not exist"
        return row.get(name)
    if sb.vendor == "hubspot":
        return app.account.get(obj, record_id).get(name)
    if sb.vendor == "pipedrive":
        return app.company.custom_value(obj, int(record_id), name)
    row = app.get_record(obj, record_id)
    assert row is not None, f"{sb.connection} {obj} {record_id} does not exist"
    raw = row.get(name)
    attribute = app.store.tables[obj].definition.by_prop().get(name)
    if attribute is not None and attribute.options and type(raw) is int:
        return attribute.options.get(raw, raw)  # a choice: the label a user sees
    return raw


def normalise(output: str, raw: Any) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if output == "conflict_flag":
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("true", "yes", "1")
    if output == "registration_expires_at":
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        if isinstance(raw, int | float):  # epoch milliseconds
            return datetime.fromtimestamp(raw / 1000, UTC).date()
        text = str(raw)
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC).date()
        return date.fromisoformat(text[:10])
    if output in ("registration_status", "registration_decision"):
        return str(raw).strip().lower()
    return raw


# -- seed keys to vendor ids --------------------------------------------------------------
def vendor_id(sandboxes: SandboxSet, connection: str, entity: str, key: str) -> str:
    """The id the sandbox gave the seed record ``key`` (an account or a deal)."""
    sb = sandboxes[connection]
    kind = "account" if entity == "account" else "deal"
    if sb.vendor == "dynamics":
        from sandbox.dynamics.seed import record_id

        return record_id(connection, kind, key)
    ids = sb.seed_ids
    found = ids.get(f"{kind}:{key}") or ids.get(key)
    if found is None:
        raise KeyError(f"{connection} has no seeded {kind} {key}")
    return found


def accounts_of(world: World, customer: str) -> list[tuple[str, str]]:
    """(connection, account key) of every seeded account of one real-world customer."""
    return sorted(k for k, c in world.truth.customer_of.items() if c == customer)


def deal_seed(world: World, connection: str, key: str) -> Any:
    crm = next(c for c in world.crms if c.connection == connection)
    return next(d for d in crm.deals if d.key == key)
