"""One cycle: pull every connection, match customers, evaluate the policy, plan, push.

The order is fixed and data flows one way. A connection that fails (auth, schema drift,
spent budget, an outage past the retry budget) is recorded as failed for this run and
skipped for planning and pushing; the others go on. ``stop`` is checked between pages
and between connections, so a SIGTERM leaves everything committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from connectors.base import Connector, Entity
from connectors.errors import ConnectorError
from state.runs import ConnectionRunEnd
from sync.checkpoints import checkpoint
from sync.plan import PlannedWrite, WriteSpec
from sync.pull import EntityCounts, EntityMapping, pull_entity
from sync.push import Backoff, PushCounts, push_connection

log = structlog.get_logger(__name__)


class RuntimeMapping(Protocol):
    def entity(self, entity: Entity) -> EntityMapping: ...

    def writes(self, entity: Entity) -> Mapping[str, WriteSpec]: ...


@dataclass(frozen=True, slots=True)
class Runtime:
    """A configured connection with its live connector and compiled mapping."""

    name: str
    vendor: str
    role: str
    distributor_id: str | None
    channel_manager: str | None
    connector: Connector
    mapping: RuntimeMapping
    pull_interval: timedelta = timedelta(0)


@dataclass(slots=True)
class ConnectionReport:
    name: str
    status: str = "ok"
    error: str | None = None
    pulled: dict[str, EntityCounts] = field(default_factory=dict)
    push: PushCounts | None = None
    budget: dict[str, Any] | None = None
    pulled_this_cycle: bool = False

    def counts(self) -> dict[str, Any]:
        return {
            "pulled": {e: c.as_dict() for e, c in self.pulled.items()},
            "push": self.push.as_dict() if self.push else None,
        }


@dataclass(slots=True)
class CycleReport:
    run_id: int
    connections: dict[str, ConnectionReport]
    planned: list[PlannedWrite] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.connections.values())


Evaluate = Callable[[Any, datetime, int], tuple[list[PlannedWrite], dict[str, Any]]]
"""(store, now, run_id) -> (planned writes, stats): matching, rules and planning."""


class EvaluationStopped(Exception):
    """Raised by an evaluation that saw the stop event between two batches: what it
    recorded stands, the rest waits for the next cycle (which evaluates in full again)."""


def pull_connection(
    store: Any, rt: Runtime, run_id: int, stop: threading.Event, report: ConnectionReport,
    cursors: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> None:
    """Pull both entities of ``rt``, each from its stored cursor (from ``cursors`` when the
    caller read them all at once, else read here)."""
    bound = log.bind(connection=rt.name)
    if cursors is None:
        cursors = store.cursors([rt.name])
    for entity in (Entity.ACCOUNT, Entity.OPPORTUNITY):
        mapping = rt.mapping.entity(entity)
        extra = [spec.field for spec in rt.mapping.writes(entity).values()]
        counts = pull_entity(
            store=store,
            connector=rt.connector,
            connection=rt.name,
            entity=entity,
            mapping=mapping,
            extra_fields=extra,
            run_id=run_id,
            stop=stop,
            cursor=cursors.get((rt.name, entity.value)),
        )
        report.pulled[entity.value] = counts
        bound.info("entity_pulled", entity=entity.value, **counts.as_dict())
        if stop.is_set():
            return


def run_cycle(
    *,
    store: Any,
    runtimes: Sequence[Runtime],
    evaluate: Evaluate,
    now: Callable[[], datetime],
    backoff: Backoff,
    stop: threading.Event | None = None,
    trigger: str = "manual",
    push: bool = True,
    last_pulled: Mapping[str, datetime] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> CycleReport:
    """One cycle; ``progress(step, connection)`` is told as each step finishes."""
    tell = progress or (lambda _step, _name: None)
    stop = stop or threading.Event()
    started = time.monotonic()
    run_id, connection_runs = store.open_run(trigger=trigger,
                                             connections=[rt.name for rt in runtimes])
    structlog.contextvars.bind_contextvars(run_id=run_id)
    reports = {rt.name: ConnectionReport(rt.name) for rt in runtimes}
    checkpoint("cycle.started")
    try:
        # every cursor in one read: only this run's pulls write them from here on (another
        # run beside it moving one meanwhile makes a page read again, never one skipped)
        cursors = store.cursors([rt.name for rt in runtimes])
        for rt in runtimes:
            if stop.is_set():
                break
            if _not_due(rt, last_pulled, now()):
                continue  # not due yet: plan and push still run on stored data
            report = reports[rt.name]
            structlog.contextvars.bind_contextvars(connection=rt.name)
            try:
                pull_connection(store, rt, run_id, stop, report, cursors)
                report.pulled_this_cycle = True
            except ConnectorError as exc:
                _failed(report, exc)
            finally:
                structlog.contextvars.unbind_contextvars("connection", "entity")
                tell("pull", rt.name)
            checkpoint("cycle.connection_pulled")

        planned: list[PlannedWrite] = []
        stats: dict[str, Any] = {}
        if not stop.is_set():
            try:
                planned, stats = evaluate(store, now(), run_id)
            except EvaluationStopped:
                stats = {"evaluation": "stopped"}
            checkpoint("cycle.evaluated")
            tell("evaluate", "")

        if push and not stop.is_set():
            # one read names the connections with anything queued; the others skip the drain
            queued = store.with_open_items([rt.name for rt in runtimes
                                            if reports[rt.name].status == "ok"])
            for rt in runtimes:
                report = reports[rt.name]
                if report.status != "ok" or stop.is_set():
                    continue
                if rt.name in queued:
                    _push(store, rt, report, now(), backoff)
                else:
                    report.push = PushCounts()
                tell("push", rt.name)
                checkpoint("cycle.connection_pushed")
        parts: list[ConnectionRunEnd] = []
        for rt in runtimes:
            report = reports[rt.name]
            report.budget = _budget(rt.connector)
            parts.append(ConnectionRunEnd(
                connection_runs[rt.name],
                status=report.status if not stop.is_set() or report.status != "ok" else "stopped",
                counts=report.counts(),
                budget=report.budget,
                error=report.error,
            ))
        checkpoint("cycle.before_finish_run")
        result = CycleReport(run_id, reports, planned, stats, stop.is_set())
        result.seconds = time.monotonic() - started
        status = "stopped" if stop.is_set() else ("ok" if result.ok else "partial")
        # the connection runs and the run close together: one commit, not one each
        store.close_run(
            run_id,
            status=status,
            counts={"connections": {n: r.counts() for n, r in reports.items()}, **stats},
            error=None
            if result.ok
            else "; ".join(f"{n}: {r.error}" for n, r in reports.items() if r.error),
            parts=parts,
        )
        log.info("cycle_finished", status=status, seconds=round(result.seconds, 2))
        return result
    except BaseException as exc:
        store.finish_run(run_id, status="crashed", counts={}, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        structlog.contextvars.unbind_contextvars("run_id")


def _not_due(rt: Runtime, last_pulled: Mapping[str, datetime] | None, now: datetime) -> bool:
    if not last_pulled or rt.name not in last_pulled or not rt.pull_interval:
        return False
    # a tick a little early (scheduler jitter) still counts as due: 10% slack
    return now - last_pulled[rt.name] < rt.pull_interval * 0.9


def _push(store: Any, rt: Runtime, report: ConnectionReport, now: datetime,
          backoff: Backoff) -> None:
    structlog.contextvars.bind_contextvars(connection=rt.name)
    try:
        report.push = push_connection(store=store, connector=rt.connector, connection=rt.name,
                                      current=_current_lookup(store, rt.name), now=now,
                                      backoff=backoff)
        if report.push.errors:
            report.status = "failed"
            report.error = report.push.errors[0]
    except ConnectorError as exc:
        _failed(report, exc)
    finally:
        structlog.contextvars.unbind_contextvars("connection")


def _current_lookup(store: Any, connection: str) -> Any:
    def lookup(entity: str, ids: Sequence[str]) -> Any:
        return store.current_values(connection, entity, ids)

    return lookup


def _failed(report: ConnectionReport, exc: ConnectorError) -> None:
    report.status = "failed"
    report.error = f"{type(exc).__name__}: {exc}"
    log.error("connection_failed", error=report.error)


def _budget(connector: Connector) -> dict[str, Any] | None:
    try:
        b = connector.budget()
    except Exception:  # a budget readout must never fail a cycle
        return None
    return {
        "unit": b.unit,
        "used": b.used,
        "limit": b.limit,
        "share_limit": b.share_limit,
        "window": b.window,
        **{k: v for k, v in b.details.items() if isinstance(v, int | float | str)},
    }
