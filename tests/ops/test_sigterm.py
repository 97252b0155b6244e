"""SIGTERM in the middle of a cycle: the daemon commits the page in hand, exits 0, loses nothing."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from state import Store
from state.tables import Account, Cursor, Opportunity, table
from tests.ops.support import (
    cycle_without_push,
    ops_config,
    run_to_end,
    scenario_sandboxes,
    seeded_counts,
    set_latency,
    spawn,
    wait_for,
    wiring_for,
)

ENTITY_TABLES: dict[str, type[SQLModel]] = {"account": Account, "opportunity": Opportunity}


def cursors(store: Store) -> dict[tuple[str, str], tuple[Any, datetime]]:
    cur = table(Cursor)
    with store.engine.connect() as conn:
        query = sa.select(cur.c.connection, cur.c.entity, cur.c.value, cur.c.updated_at)
        rows = conn.execute(query)
        return {(c, e): (v, at) for c, e, v, at in rows}


def seen_in_run(store: Store, run_id: int) -> dict[tuple[str, str], int]:
    """(connection, entity) -> records the run read (their seen generation is the run id)."""
    seen: dict[tuple[str, str], int] = {}
    with store.engine.connect() as conn:
        for entity, model in ENTITY_TABLES.items():
            tbl = table(model)
            query = (
                sa.select(tbl.c.connection, sa.func.count())
                .where(tbl.c.seen_generation == run_id)
                .group_by(tbl.c.connection)
            )
            for connection, n in conn.execute(query):
                seen[(connection, entity)] = n
    return seen


def live_records(store: Store) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    with store.engine.connect() as conn:
        for entity, model in ENTITY_TABLES.items():
            tbl = table(model)
            query = (
                sa.select(tbl.c.connection, sa.func.count())
                .where(tbl.c.deleted.is_(False))
                .group_by(tbl.c.connection)
            )
            for connection, n in conn.execute(query):
                counts[(connection, entity)] = n
    return counts


def outbox_snapshot(store: Store) -> dict[int, tuple[str, str, str, str, Any]]:
    return {
        o.id: (o.connection, o.external_id, o.field, o.state, o.value)
        for o in store.outbox_items(limit=100_000)
    }


def mid_pull(store: Store) -> tuple[int, int] | None:
    """(run id, entities stored so far) once a scheduled run has stored a page, not all."""
    try:
        runs = store.recent_runs(limit=1)
        if not runs or runs[0].trigger != "schedule" or runs[0].status != "running":
            return None
        run = runs[0]
        advanced = [k for k, (_v, at) in cursors(store).items() if at >= run.started_at]
    except sa.exc.OperationalError:  # the daemon holds the SQLite write lock right now
        return None
    return (run.id, len(advanced)) if advanced else None


@pytest.mark.slow
def test_sigterm_mid_pull_commits_the_page_and_loses_nothing(tmp_path: Path) -> None:
    with scenario_sandboxes(tmp_path, customers=80) as sandboxes:
        config = ops_config(sandboxes, tmp_path / "cfg")
        expected = seeded_counts(sandboxes)

        # A first cycle that queues writes without pushing them: the outbox has work in it.
        wiring = wiring_for(config)
        try:
            first = cycle_without_push(wiring)
            assert first.ok, first.connections
        finally:
            wiring.close()
        store = Store.from_url(wiring.settings.store.url)
        try:
            queued = outbox_snapshot(store)
            assert queued and {s for *_rest, s, _v in queued.values()} == {"pending"}
            # Forget every read position: the daemon's cycle is a full re-read, slowed down.
            for connection, entity in expected:
                store.reset_cursor(connection, entity)
            set_latency(sandboxes, 150)

            daemon = spawn(config, "run", directory=tmp_path, name="daemon")
            try:
                run_id, _stored = wait_for(
                    lambda: mid_pull(store), what="the daemon to store its first page"
                )
                daemon.signal(signal.SIGTERM)
                code = daemon.wait(deadline=30)
            finally:
                daemon.stop()
            assert code == 0, daemon.output()[-3000:]

            run = next(r for r in store.recent_runs(limit=5) if r.id == run_id)
            assert run.status == "stopped", (run, daemon.output()[-2000:])
            assert run.finished_at is not None
            per_connection = {c.connection: c.status for c in store.connection_runs(run_id)}
            assert set(per_connection.values()) <= {"stopped"}, per_connection

            # Cursor and page go together: an advanced cursor means that entity's page
            # (each entity is one page at this size) is stored, and nothing else was read.
            advanced = {k for k, (_v, at) in cursors(store).items() if at >= run.started_at}
            seen = seen_in_run(store, run_id)
            assert set(seen) == advanced, (seen, advanced)
            for key in advanced:
                assert seen[key] == expected[key], key
            assert advanced < set(expected), "the stop came after the whole pull"
            assert outbox_snapshot(store) == queued, "the stopped run changed the outbox"
        finally:
            store.close()

        # A normal cycle afterwards: every record in the store, nothing skipped, queue drained.
        set_latency(sandboxes, 0)
        code, _stdout, output = run_to_end(
            config, "sync", "--once", directory=tmp_path, name="again"
        )
        assert code == 0, output[-3000:]
        store = Store.from_url(wiring.settings.store.url)
        try:
            assert live_records(store) == expected
            assert store.skipped_records() == []
            final = {o.id: o.state for o in store.outbox_items(limit=100_000)}
            assert set(queued) <= set(final)
            assert {final[i] for i in queued} == {"sent"}, final
        finally:
            store.close()


def mid_push(store: Store) -> bool:
    """A scheduled run is open and has pushed some queued writes, not all."""
    try:
        runs = store.recent_runs(limit=1)
        if not runs or runs[0].trigger != "schedule" or runs[0].status != "running":
            return False
        states = {o.state for o in store.outbox_items(limit=100_000)}
    except sa.exc.OperationalError:
        return False
    return {"sent", "pending"} <= states


@pytest.mark.slow
def test_sigterm_mid_push_keeps_every_queued_write(tmp_path: Path) -> None:
    with scenario_sandboxes(tmp_path, customers=60) as sandboxes:
        config = ops_config(sandboxes, tmp_path / "cfg")
        wiring = wiring_for(config)
        try:
            assert cycle_without_push(wiring).ok
        finally:
            wiring.close()
        store = Store.from_url(wiring.settings.store.url)
        try:
            queued = outbox_snapshot(store)
            set_latency(sandboxes, 100)
            daemon = spawn(config, "run", directory=tmp_path, name="daemon")
            try:
                wait_for(lambda: mid_push(store), what="the daemon to push part of the outbox")
                daemon.signal(signal.SIGTERM)
                code = daemon.wait(deadline=30)
            finally:
                daemon.stop()
            assert code == 0, daemon.output()[-3000:]
            assert store.recent_runs(limit=1)[0].status == "stopped"
            after = outbox_snapshot(store)
            assert set(after) == set(queued), "queued writes disappeared"
            states = {state for *_rest, state, _value in after.values()}
            assert states == {"sent", "pending"}, states
        finally:
            store.close()

        set_latency(sandboxes, 0)
        code, _stdout, output = run_to_end(
            config, "sync", "--once", directory=tmp_path, name="again"
        )
        assert code == 0, output[-3000:]
        # Read back from every CRM: nothing the policy wants is missing.
        code, stdout, output = run_to_end(
            config, "plan", "--json", directory=tmp_path, name="plan"
        )
        assert code == 0, output[-3000:]
        plan = orjson.loads(stdout)
        assert plan["writes"] == [] and plan["queued_from_earlier_cycles"] == [], plan["writes"][:5]
