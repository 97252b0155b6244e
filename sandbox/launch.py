"""Start one vendor sandbox per CRM of a World on free local ports, and stop them again.

Vendor packages are imported only when a World needs them, so a missing or broken vendor
sandbox fails with a message naming it instead of breaking every launch.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from sandbox.core import Faults, SandboxApp
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import TlsFiles, ensure_tls
from sandbox.world import CrmSeed, GroundTruth, World

log = structlog.get_logger(__name__)

VENDORS = ("salesforce", "hubspot", "pipedrive", "dynamics")


@dataclass(frozen=True, slots=True)
class VendorSpec:
    module: str
    app_class: str
    https: bool  # simple-salesforce and msal only speak HTTPS


VENDOR_SPECS: dict[str, VendorSpec] = {
    "salesforce": VendorSpec("sandbox.salesforce", "SalesforceSandbox", https=True),
    "hubspot": VendorSpec("sandbox.hubspot", "HubSpotSandbox", https=False),
    "pipedrive": VendorSpec("sandbox.pipedrive", "PipedriveSandbox", https=False),
    "dynamics": VendorSpec("sandbox.dynamics", "DynamicsApp", https=True),
}


class LaunchError(RuntimeError):
    """A sandbox could not be started (unknown vendor, vendor package missing)."""


def app_class(vendor: str) -> type[SandboxApp]:
    spec = VENDOR_SPECS.get(vendor)
    if spec is None:
        raise LaunchError(f"unknown vendor {vendor!r}; expected one of {', '.join(VENDORS)}")
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise LaunchError(f"the {vendor} sandbox ({spec.module}) cannot be imported: {exc}") \
            from exc
    cls = getattr(module, spec.app_class, None)
    if cls is None:  # fall back to whatever SandboxApp subclass the package exports
        cls = next((v for v in vars(module).values() if isinstance(v, type)
                    and issubclass(v, SandboxApp) and v is not SandboxApp), None)
    if cls is None:
        raise LaunchError(f"{spec.module} exports no SandboxApp subclass")
    return cls


@dataclass(slots=True)
class LaunchedSandbox:
    """One running sandbox: which connection it plays and how to reach it."""

    connection: str
    vendor: str
    role: str
    distributor_id: str | None
    app: SandboxApp
    running: RunningSandbox
    ca_file: Path | None

    @property
    def base_url(self) -> str:
        return self.running.base_url

    def credentials(self) -> dict[str, Any]:
        return self.app.credentials()

    @property
    def seed_ids(self) -> dict[str, str]:
        """Seed key -> vendor record id, where the vendor sandbox reports it."""
        ids = getattr(self.app, "seed_ids", None) or {}
        return {str(k): str(v) for k, v in ids.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "vendor": self.vendor,
            "role": self.role,
            "distributor_id": self.distributor_id,
            "base_url": self.base_url,
            "ca_file": str(self.ca_file) if self.ca_file else None,
            "credentials": _jsonable(self.credentials()),
        }


@dataclass(slots=True)
class SandboxSet:
    """The sandboxes of one World, by connection name."""

    world: World
    sandboxes: dict[str, LaunchedSandbox] = field(default_factory=dict)

    def __getitem__(self, connection: str) -> LaunchedSandbox:
        return self.sandboxes[connection]

    def __iter__(self) -> Any:
        return iter(self.sandboxes.values())

    def stop(self) -> None:
        """Stop every server at once: each shutdown waits out a poll interval."""
        stoppers = [threading.Thread(target=s.running.stop, name=f"stop-{s.connection}")
                    for s in self.sandboxes.values()]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        log.info("sandboxes_stopped", count=len(self.sandboxes))
        self.sandboxes.clear()

    def describe(self) -> dict[str, Any]:
        return {"seed": self.world.seed,
                "now": self.world.now.isoformat() if self.world.now else None,
                "sandboxes": [s.describe() for s in self.sandboxes.values()]}

    def __enter__(self) -> SandboxSet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_world(
    world: World,
    *,
    vendors: Iterable[str] | None = None,
    tls_dir: Path,
    faults: dict[str, Faults] | None = None,
    native: Mapping[str, Any] | None = None,
    idle_timeout_s: float = 60.0,
) -> SandboxSet:
    """Serve every CRM of ``world`` (only those of ``vendors`` when given) on free ports,
    each closing a connection idle for ``idle_timeout_s``.

    HTTPS vendors use the CA and certificate in ``tls_dir`` (created once). ``faults``
    maps a connection name to the faults its sandbox starts with; ``native`` maps a
    connection name to a vendor-native fixture loaded after the seed (each vendor
    package documents its format).
    """
    wanted = set(vendors) if vendors is not None else set(VENDORS)
    unknown = wanted - set(VENDORS)
    if unknown:
        raise LaunchError(f"unknown vendor(s) {', '.join(sorted(unknown))}; "
                          f"expected some of {', '.join(VENDORS)}")
    tls: TlsFiles | None = None
    started = SandboxSet(world=world)
    try:
        for crm in world.crms:
            if crm.vendor not in wanted:
                continue
            spec = VENDOR_SPECS[crm.vendor]
            cls = app_class(crm.vendor)
            app = cls.from_seed(crm, faults=(faults or {}).get(crm.connection))  # type: ignore[attr-defined]  # every vendor app defines from_seed
            if native and crm.connection in native:
                app.load_fixture(native[crm.connection])
            if spec.https and tls is None:
                tls = ensure_tls(Path(tls_dir))
            running = serve(app, tls=tls if spec.https else None,
                            idle_timeout_s=idle_timeout_s)
            ca_file = tls.ca_file if spec.https and tls else None
            _tell_app_its_address(app, running.base_url, ca_file)
            started.sandboxes[crm.connection] = LaunchedSandbox(
                connection=crm.connection, vendor=crm.vendor, role=crm.role,
                distributor_id=crm.distributor_id, app=app, running=running, ca_file=ca_file)
            log.info("sandbox_started", connection=crm.connection, vendor=crm.vendor,
                     base_url=running.base_url, accounts=len(crm.accounts),
                     deals=len(crm.deals), native=bool(native and crm.connection in native))
    except BaseException:
        started.stop()
        raise
    return started


def start_native(entries: Iterable[Mapping[str, Any]], *, tls_dir: Path,
                 vendors: Iterable[str] | None = None) -> SandboxSet:
    """Serve sandboxes holding vendor-native fixtures only (no generated scenario).

    Each entry: ``{"connection", "vendor", "role" (default distributor), "distributor_id"
    (optional), "native": {...the vendor package's fixture format...}}``.
    """
    crms: list[CrmSeed] = []
    natives: dict[str, Any] = {}
    for n, entry in enumerate(entries):
        missing = [k for k in ("connection", "vendor") if not entry.get(k)]
        if missing:
            raise LaunchError(f"native fixture entry {n}: {', '.join(missing)} required")
        crms.append(CrmSeed(connection=str(entry["connection"]), vendor=str(entry["vendor"]),
                            role=str(entry.get("role") or "distributor"),
                            distributor_id=entry.get("distributor_id")))
        natives[str(entry["connection"])] = entry.get("native") or {}
    world = World(seed=0, crms=crms, truth=GroundTruth())
    return start_world(world, vendors=vendors, tls_dir=tls_dir, native=natives)


def _tell_app_its_address(app: SandboxApp, base_url: str, ca_file: Path | None) -> None:
    """Apps that put their own URL into credentials or links learn it once served."""
    bind = getattr(app, "bind", None)
    if callable(bind):
        bind(base_url, str(ca_file) if ca_file else None)
    elif hasattr(app, "base_url"):
        setattr(app, "base_url", base_url)  # noqa: B010  # an optional attribute of some apps
        if hasattr(app, "ca_file"):
            setattr(app, "ca_file", str(ca_file) if ca_file else None)  # noqa: B010  # as above


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
