"""Sync runs and per-connection runs: history rows an operator can read."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from state.base import StoreBase, utcnow, with_default
from state.rows import ConnectionRunRow, RunRow
from state.tables import ConnectionRun, SyncRun, table


class RunsMixin(StoreBase):
    def start_run(self, *, trigger: str) -> int:
        """Open a run; its id is also the generation stamped on the records it changes."""
        with self._write() as conn:
            run_id = conn.execute(
                sa.insert(table(SyncRun))
                .values(started_at=utcnow(), status="running", trigger=trigger, counts={})
                .returning(table(SyncRun).c.id)
            ).scalar_one()
        return int(run_id)

    def finish_run(
        self, run_id: int, *, status: str, counts: dict[str, Any], error: str | None
    ) -> None:
        runs = table(SyncRun)
        with self._write() as conn:
            _require_one(
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == run_id)
                    .values(finished_at=utcnow(), status=status, counts=counts, error=error)
                ),
                f"sync run {run_id}",
            )

    def start_connection_run(self, run_id: int, connection: str) -> int:
        runs = table(ConnectionRun)
        with self._write() as conn:
            cr_id = conn.execute(
                sa.insert(runs)
                .values(
                    run_id=run_id, connection=connection, status="running", counts={},
                    writes_sent=0, writes_failed=0, started_at=utcnow(),
                )
                .returning(runs.c.id)
            ).scalar_one()
        return int(cr_id)

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
        runs = table(ConnectionRun)
        with self._write() as conn:
            _require_one(
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == cr_id)
                    .values(
                        status=status, counts=counts, budget=budget, error=error,
                        writes_sent=writes_sent, writes_failed=writes_failed,
                        finished_at=utcnow(),
                    )
                ),
                f"connection run {cr_id}",
            )

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


def _connection_run(row: Any) -> ConnectionRunRow:
    return ConnectionRunRow(*with_default(row, 4, {}))


def _require_one(result: sa.CursorResult[Any], what: str) -> None:
    if result.rowcount != 1:
        raise LookupError(f"{what} does not exist")
