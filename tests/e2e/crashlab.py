"""The crash-safety experiment: one ``sync --once`` killed at a named point, then recovered.

Every play starts from the same state (fresh sandboxes of one world, an empty store), so
each kill point is compared with the same uncrashed reference. Plays run in a thread
pool: the heavy part is the ``channelsync`` subprocesses, which use the other cores.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.base import Entity
from sandbox.world import World
from state import Store
from sync.cycle import ConnectionReport, pull_connection
from tests.e2e.support import (
    NATIVE_OBJECT,
    CrmView,
    Finished,
    Write,
    WriteTap,
    config_for,
    run_sync_once,
    running_world,
    vendor_id,
    wiring_for,
)

# Alembic's migration context is process-global: open (and migrate) stores one at a time.
STORE_OPEN_LOCK = threading.Lock()

Names = dict[tuple[str, str, str], str]  # (connection, entity, vendor id) -> seed key
RecordDump = dict[tuple[str, str, str], dict[str, Any]]
VOLATILE = ("changed_generation", "updated_at")  # our bookkeeping, not the CRM's data


@dataclass(slots=True)
class Play:
    """What one sequence of runs did and left behind."""

    point: str | None
    runs: list[Finished]
    writes: list[list[Write]]  # per run, every value the sandboxes stored (by seed key)
    store: RecordDump  # the store after the last run
    fresh: RecordDump  # a fresh full pull of the sandboxes after the last run
    cursors: dict[tuple[str, str], Any]
    crm: dict[tuple[str, str, str, str], Any]  # (connection, entity, seed key, output)
    pulled_complete: list[dict[tuple[str, str], bool]]  # per finished run after the crash
    outbox_states: dict[str, int]
    names: Names

    def seed_key(self, key: tuple[str, str, str]) -> str:
        return self.names.get(key, key[2])

    @property
    def all_writes(self) -> list[Write]:
        return [w for run in self.writes for w in run]


def dump_store(store: Store) -> RecordDump:
    dump: RecordDump = {}
    for rows in (
        store.load_accounts(include_deleted=True),
        store.load_opportunities(include_deleted=True),
    ):
        for row in rows:
            values = {k: getattr(row, k) for k in row.__slots__ if k not in VOLATILE}
            dump[tuple(row.key)] = values  # type: ignore[index]  # a RecordKey is a 3-tuple
    by_connection: dict[tuple[str, str], list[str]] = {}
    for connection, entity, external_id in dump:
        by_connection.setdefault((connection, entity), []).append(external_id)
    for (connection, entity), ids in by_connection.items():
        for external_id, (etag, raw) in store.current_values(connection, entity, ids).items():
            dump[(connection, entity, external_id)]["raw"] = (etag, raw)
    return dump


def fresh_pull(sandboxes: Any, directory: Path) -> RecordDump:
    """Everything the sandboxes hold now, read from scratch into an empty store."""
    wiring = wiring_for(config_for(sandboxes, directory))
    try:
        with STORE_OPEN_LOCK:
            store = wiring.store()
        run_id = store.start_run(trigger="test: fresh pull")
        for rt in wiring.runtimes():
            pull_connection(store, rt, run_id, threading.Event(), ConnectionReport(rt.name))
        store.finish_run(run_id, status="ok", counts={}, error=None)
        return dump_store(store)
    finally:
        wiring.close()


def _complete_flags(counts: dict[str, Any]) -> dict[tuple[str, str], bool]:
    flags: dict[tuple[str, str], bool] = {}
    for name, conn in (counts.get("connections") or {}).items():
        for entity, pulled in (conn.get("pulled") or {}).items():
            flags[(name, entity)] = bool(pulled.get("complete"))
    return flags


def seed_keys(world: World, sandboxes: Any) -> Names:
    """Vendor ids differ between sandbox instances (a Salesforce id carries its org's
    instance), seed keys do not."""
    names: Names = {}
    for crm in world.crms:
        for entity, seeds in (("account", crm.accounts), ("opportunity", crm.deals)):
            for seed in seeds:
                record = vendor_id(sandboxes, crm.connection, entity, seed.key)
                names[(crm.connection, entity, record)] = seed.key
    return names


def _by_seed(names: Names, sandboxes: Any, writes: list[Write]) -> list[Write]:
    out = []
    for w in writes:
        objects = NATIVE_OBJECT[sandboxes[w.connection].vendor]
        entity = next((e for e, o in objects.items() if o.lower() == w.obj.lower()), w.obj)
        key = names.get((w.connection, entity, w.record_id), w.record_id)
        out.append(Write(w.connection, w.obj, key, w.field, w.value))
    return out


def play(world: World, tls_dir: Path, directory: Path, point: str | None) -> Play:
    """Kill ``sync --once`` at ``point`` (None: no crash), then run it twice more."""
    with running_world(world, tls_dir) as sandboxes:
        tap = WriteTap().install(sandboxes)
        names = seed_keys(world, sandboxes)
        config = config_for(sandboxes, directory)
        runs: list[Finished] = []
        writes: list[list[Write]] = []
        for crash_at in (point, None, None):
            mark = tap.mark()
            runs.append(run_sync_once(config, crash_at=crash_at))
            writes.append(_by_seed(names, sandboxes, tap.since(mark)))
        wiring = wiring_for(config)
        try:
            with STORE_OPEN_LOCK:
                store = wiring.store()
            recovered = dump_store(store)
            cursors = {
                (rt.name, e.value): store.get_cursor(rt.name, e.value)
                for rt in wiring.runtimes()
                for e in Entity
            }
            finished = [r for r in reversed(store.recent_runs(limit=10)) if r.status == "ok"]
            complete = [_complete_flags(r.counts) for r in finished]
            states: dict[str, int] = {}
            for counts in store.outbox_counts().values():
                for state, n in counts.items():
                    states[state] = states.get(state, 0) + n
        finally:
            wiring.close()
        fresh = fresh_pull(sandboxes, directory / "fresh")
        view = CrmView.of(sandboxes, config)
        crm: dict[tuple[str, str, str, str], Any] = {}
        for connection, entity, external_id in fresh:
            if fresh[(connection, entity, external_id)]["deleted"]:
                continue
            key = names.get((connection, entity, external_id), external_id)
            for output, value in view.values(connection, entity, external_id).items():
                crm[(connection, entity, key, output)] = value
    # customer ids are made from vendor ids, which differ between sandbox instances: name
    # each customer after the first seed record it is written to
    labels: dict[Any, str] = {}
    for (connection, _entity, key, output), value in sorted(crm.items()):
        if output == "customer_id" and value is not None:
            labels.setdefault(value, f"customer of {connection}/{key}")
    for k, value in crm.items():
        if k[3] == "customer_id" and value is not None:
            crm[k] = labels[value]
    writes = [
        [Write(w.connection, w.obj, w.record_id, w.field, labels.get(w.value, w.value))
         for w in run]
        for run in writes
    ]
    return Play(point, runs, writes, recovered, fresh, cursors, crm, complete, states, names)


@dataclass(slots=True)
class CrashLab:
    """Runs the reference and the kill points in a pool; each test asks for its own."""

    world: World
    tls_dir: Path
    root: Path
    points: list[str]
    workers: int = 3
    _pool: ThreadPoolExecutor | None = None
    _futures: dict[str | None, Future[Play]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _submit(self, point: str | None) -> Future[Play]:
        if point not in self._futures:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="crashlab")
            slug = "reference" if point is None else point.replace("#", "-")
            self._futures[point] = self._pool.submit(
                play, self.world, self.tls_dir, self.root / slug, point
            )
        return self._futures[point]

    def result(self, point: str | None) -> Play:
        with self._lock:
            # under xdist each worker runs only some kill points: start only what is asked
            if not self._futures and "PYTEST_XDIST_WORKER" not in os.environ:
                for p in (None, *self.points):
                    self._submit(p)
            future = self._submit(point)
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
