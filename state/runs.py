"""Sync runs and per-connection runs: history rows an operator can read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from state.base import StoreBase, utcnow, with_default
from state.rows import ConnectionRunRow, RunRow
from state.tables import ConnectionRun, SyncRun, table


@dataclass(frozen=True, slots=True)
class ConnectionRunEnd:
    """How one connection's part of a run ended (see :meth:`RunsMixin.close_run`)."""

    cr_id: int
    status: str
    counts: dict[str, Any]
    budget: dict[str, Any] | None
    error: str | None


class RunsMixin(StoreBase):
    def start_run(self, *, trigger: str) -> int:
        """Open a run; its id is also the generation stamped on the records it changes."""
        with self._write() as conn:
            return _insert_run(conn, trigger)

    def open_run(self, *, trigger: str, connections: Sequence[str]) -> tuple[int, dict[str, int]]:
        """Open a run and a connection run for each of ``connections`` in one transaction
        (one each would cost a cycle as many commits): the run id, and connection -> id."""
        runs = table(ConnectionRun)
        now = utcnow()
        with self._write() as conn:
            run_id = _insert_run(conn, trigger)
            if not connections:
                return run_id, {}
            ids = conn.execute(
                sa.insert(runs).returning(runs.c.id, sort_by_parameter_order=True),
                [{"run_id": run_id, "connection": name, "status": "running", "counts": {},
                  "writes_sent": 0, "writes_failed": 0, "started_at": now}
                 for name in connections],
            ).scalars().all()
        return run_id, {name: int(cr_id) for name, cr_id in zip(connections, ids, strict=True)}

    def close_run(
        self, run_id: int, *, status: str, counts: dict[str, Any], error: str | None,
        parts: Sequence[ConnectionRunEnd],
    ) -> None:
        """Finish a run's connection runs and the run itself in one transaction."""
        now = utcnow()
        with self._write() as conn:
            for part in parts:
                _finish_part(conn, part.cr_id, now, status=part.status, counts=part.counts,
                             budget=part.budget, error=part.error)
            _finish(conn, run_id, now, status=status, counts=counts, error=error)

    def finish_run(
        self, run_id: int, *, status: str, counts: dict[str, Any], error: str | None
    ) -> None:
        with self._write() as conn:
            _finish(conn, run_id, utcnow(), status=status, counts=counts, error=error)

    def finish_connection_run(
        self,
        cr_id: int,
        *,
        status: str,
        counts: dict[str, Any],
        budget: dict[str, Any] | None,
        error: str | None,
        writes_sent: int = 0,
        writes_failed: int = 0,
    ) -> None:
        with self._write() as conn:
            _finish_part(conn, cr_id, utcnow(), status=status, counts=counts, budget=budget,
                         error=error, writes_sent=writes_sent, writes_failed=writes_failed)

    def recent_runs(self, limit: int = 20) -> list[RunRow]:
        """Newest first."""
        runs = table(SyncRun)
        query = sa.select(*[runs.c[f.name] for f in fields(RunRow)])
        with self._read() as conn:
            rows = conn.execute(query.order_by(runs.c.id.desc()).limit(limit))
            return [RunRow(*with_default(row, 5, {})) for row in rows]

    def connection_runs(self, run_id: int) -> list[ConnectionRunRow]:
        runs = table(ConnectionRun)
        query = sa.select(*[runs.c[f.name] for f in fields(ConnectionRunRow)])
        with self._read() as conn:
            rows = conn.execute(query.where(runs.c.run_id == run_id).order_by(runs.c.id))
            return [_connection_run(row) for row in rows]

    def last_connection_runs(self) -> dict[str, ConnectionRunRow]:
        """The latest run of each connection."""
        runs = table(ConnectionRun)
        latest = (
            sa.select(sa.func.max(runs.c.id)).group_by(runs.c.connection).scalar_subquery()
        )
        query = sa.select(*[runs.c[f.name] for f in fields(ConnectionRunRow)])
        with self._read() as conn:
            rows = conn.execute(query.where(runs.c.id.in_(latest)))
            return {row.connection: row for row in map(_connection_run, rows)}


def _insert_run(conn: sa.Connection, trigger: str) -> int:
    runs = table(SyncRun)
    return int(conn.execute(
        sa.insert(runs)
        .values(started_at=utcnow(), status="running", trigger=trigger, counts={})
        .returning(runs.c.id)
    ).scalar_one())


def _finish(conn: sa.Connection, run_id: int, now: datetime, *, status: str,
            counts: dict[str, Any], error: str | None) -> None:
    runs = table(SyncRun)
    _require_one(
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id)
            .values(finished_at=now, status=status, counts=counts, error=error)
        ),
        f"sync run {run_id}",
    )


def _finish_part(conn: sa.Connection, cr_id: int, now: datetime, *, status: str,
                 counts: dict[str, Any], budget: dict[str, Any] | None, error: str | None,
                 writes_sent: int = 0, writes_failed: int = 0) -> None:
    runs = table(ConnectionRun)
    _require_one(
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == cr_id)
            .values(status=status, counts=counts, budget=budget, error=error,
                    writes_sent=writes_sent, writes_failed=writes_failed, finished_at=now)
        ),
        f"connection run {cr_id}",
    )


def _connection_run(row: Any) -> ConnectionRunRow:
    return ConnectionRunRow(*with_default(row, 4, {}))


def _require_one(result: sa.CursorResult[Any], what: str) -> None:
    if result.rowcount != 1:
        raise LookupError(f"{what} does not exist")
