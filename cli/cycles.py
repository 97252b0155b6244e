"""``sync --once``, ``run`` and ``plan``: cycles over the configured connections."""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from sync.cycle import CycleReport, Runtime, run_cycle
from sync.daemon import Daemon
from sync.evaluate import Outcome, evaluate_store
from sync.incremental import evaluate_incremental
from sync.leader import leadership_for
from sync.metrics import Health, Metrics, serve_http
from sync.notify import Webhook, connection_failure_events, deliver_due
from wiring import Wiring

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_cycle(
    wiring: Wiring,
    *,
    stop: threading.Event | None = None,
    trigger: str = "manual",
    now: Any = utcnow,
    metrics: Metrics | None = None,
    health: Health | None = None,
    progress: Any = None,
) -> CycleReport:
    """Pull, evaluate, push once; deliver due notifications; update metrics."""
    store = wiring.store()
    runtimes = wiring.runtimes()
    policy = wiring.policy()
    match_settings = wiring.match_settings()
    scorecards = wiring.scorecards()

    def evaluate(store_: Any, at: datetime, run_id: int) -> tuple[list[Any], dict[str, Any]]:
        # only what changed since the last cycle; a full run when first, configured or due
        outcome = evaluate_incremental(
            store_,
            runtimes,
            policy=policy,
            match_settings=match_settings,
            now=at,
            run_id=run_id,
            scorecards=scorecards,
            stop=stop,
        )
        return outcome.planned, outcome.stats

    report = run_cycle(
        store=store,
        runtimes=runtimes,
        evaluate=evaluate,
        now=now,
        backoff=wiring.backoff(),
        stop=stop,
        trigger=trigger,
        progress=progress,
        # only the daemon spaces pulls out; a manual cycle always reads every CRM
        last_pulled=wiring.last_pulled if trigger == "schedule" else None,
    )
    for name, conn in report.connections.items():
        if conn.pulled_this_cycle and conn.status == "ok":
            wiring.last_pulled[name] = now()
    _deliver(wiring, now())
    _observe(report, runtimes, store, metrics, health, now())
    return report


def _deliver(wiring: Wiring, now: datetime) -> None:
    hook = wiring.settings.notifications.webhook
    if hook is None:
        return
    headers = {}
    if hook.secret_header is not None:
        headers[hook.secret_header.name] = hook.secret_header.value.get_secret_value()
    import requests

    with requests.Session() as session:
        deliver_due(
            store=wiring.store(),
            webhook=Webhook(
                url=str(hook.url), headers=headers, timeout=hook.timeout.total_seconds()
            ),
            session=session,
            now=now,
        )


def _observe(
    report: CycleReport,
    runtimes: list[Runtime],
    store: Any,
    metrics: Metrics | None,
    health: Health | None,
    now: datetime,
) -> None:
    for name, conn in report.connections.items():
        if conn.status == "ok":
            if health is not None:
                health.succeeded(name, now)
            if metrics is not None:
                metrics.last_success.labels(name).set(now.timestamp())
        elif metrics is not None:
            metrics.connection_failures.labels(name).inc()
        if metrics is None:
            continue
        for entity, counts in conn.pulled.items():
            metrics.records_pulled.labels(name, entity).inc(counts.records)
            metrics.records_skipped.labels(name, entity).inc(counts.skipped)
        if conn.push is not None:
            metrics.writes_sent.labels(name).inc(conn.push.sent)
            metrics.writes_failed.labels(name).inc(conn.push.failed + conn.push.dead)
        if conn.budget:
            unit = str(conn.budget.get("unit", "requests"))
            metrics.budget_used.labels(name, unit).set(float(conn.budget.get("used") or 0))
            if conn.budget.get("share_limit") is not None:
                metrics.budget_limit.labels(name, unit).set(float(conn.budget["share_limit"]))
    if metrics is not None:
        metrics.cycle_duration.observe(report.seconds)
        for connection, states in store.outbox_counts().items():
            for state, count in states.items():
                metrics.outbox_depth.labels(connection, state).set(count)


def print_cycle(report: CycleReport) -> None:
    print(
        f"run {report.run_id}: {'ok' if report.ok else 'with failures'}"
        f"{' (stopped)' if report.stopped else ''} in {report.seconds:.1f}s"
    )
    for name, conn in report.connections.items():
        pulled = (
            ", ".join(
                f"{e} {c.records} read/{c.changed} changed/{c.deleted} deleted/{c.skipped} skipped"
                for e, c in conn.pulled.items()
            )
            or "not pulled"
        )
        push = conn.push.as_dict() if conn.push else {}
        line = f"  {name}: {conn.status}; {pulled}; writes sent {push.get('sent', 0)}"
        line += f", failed {push.get('failed', 0)}, dead {push.get('dead', 0)}"
        if conn.error:
            line += f"\n    error: {conn.error}"
        print(line)
    stats = report.stats
    if stats:
        print(
            f"  customers {stats.get('customers')}, findings "
            f"{sum(stats.get('findings', {}).values())}, queued writes {stats.get('queued')}"
        )


def sync_command(args: argparse.Namespace, wiring: Wiring) -> int:
    if not args.once:
        return run_command(args, wiring)
    # the daemon's lock: a cycle by hand never runs beside the daemon's (or another's)
    leader = leadership_for(wiring.store().engine)
    try:
        if not leader.try_acquire():
            print("another channelsync process (the daemon, or a sync --once) is active on "
                  "this store; its cycles do this work, so no second cycle was started",
                  file=sys.stderr)
            return 1
        report = one_cycle(wiring, trigger="sync --once")
    finally:
        leader.release()
        wiring.close()
    print_cycle(report)
    return 0 if report.ok else 1


def run_command(args: argparse.Namespace, wiring: Wiring) -> int:
    settings = wiring.settings
    store = wiring.store()
    runtimes = wiring.runtimes()
    metrics = Metrics()
    health = Health(
        connections=[rt.name for rt in runtimes], stale_after=settings.schedule.stale_after
    )
    host, _, port = settings.schedule.health_listen.rpartition(":")
    try:
        server, _thread = serve_http(
            host=host or "127.0.0.1", port=int(port), metrics=metrics, health=health
        )
    except OSError as exc:  # port taken (a second daemon on this host?), address not local
        print(
            f"schedule.health_listen {settings.schedule.health_listen}: cannot listen there"
            f" ({exc.strerror or exc}); give each daemon on a host its own port",
            file=sys.stderr,
        )
        wiring.close()
        return 2
    problems = check_connectivity(runtimes)
    for name, problem in problems.items():
        print(f"{name}: {problem}")

    def cycle(stop: threading.Event) -> CycleReport:
        _close_orphaned_runs(store)
        report = one_cycle(wiring, stop=stop, trigger="schedule", metrics=metrics, health=health)
        if store.add_notifications(connection_failure_events(store)):
            _deliver(wiring, utcnow())  # a connection just crossed the limit: tell now
        return report

    daemon = Daemon(
        cycle=cycle,
        interval=settings.schedule.cycle_interval,
        leader=leadership_for(store.engine),
        health=health,
    )
    daemon.install_signal_handlers()
    print(
        f"channelsync daemon: cycle every {settings.schedule.cycle_interval}, "
        f"health and metrics on http://{host or '127.0.0.1'}:{server.server_port}/",
        flush=True,
    )
    try:
        return daemon.run_forever()
    finally:
        server.shutdown()
        wiring.close()


def _close_orphaned_runs(store: Any) -> None:
    """Scheduled runs still open when the leader starts a cycle belong to a daemon that
    died (``kill -9``, a lost host): only the lock holder runs scheduled cycles."""
    error = "the daemon running it died; the next cycle re-reads from the last stored page"
    for run in store.recent_runs(limit=20):
        if run.trigger != "schedule" or run.status != "running":
            continue
        for part in store.connection_runs(run.id):
            if part.status == "running":
                store.finish_connection_run(
                    part.id,
                    status="interrupted",
                    counts=part.counts,
                    budget=part.budget,
                    error=error,
                )
        store.finish_run(run.id, status="interrupted", counts=run.counts, error=error)
        log.warning("orphaned_run_closed", orphan_run_id=run.id)


def check_connectivity(runtimes: list[Runtime]) -> dict[str, str]:
    """At start: can each connection describe its entities? Says exactly what is wrong."""
    from connectors.base import Entity
    from connectors.errors import ConnectorError

    problems: dict[str, str] = {}
    for rt in runtimes:
        try:
            for entity in Entity:
                rt.connector.describe(entity)
        except ConnectorError as exc:
            problems[rt.name] = f"{type(exc).__name__}: {exc}"
    return problems


def plan_command(args: argparse.Namespace, wiring: Wiring) -> int:
    """Dry run: refresh the store from the CRMs, then list every write the policy needs."""
    try:
        store = wiring.store()
        runtimes = wiring.runtimes()
        failures: dict[str, str] = {}
        if not args.no_pull:
            failures = _pull_only(wiring)
        outcome = evaluate_store(
            store,
            runtimes,
            policy=wiring.policy(),
            match_settings=wiring.match_settings(),
            now=utcnow(),
            record=False,
            scorecards=wiring.scorecards(),
        )
        pending = [
            o
            for states in [store.outbox_items(state=s) for s in ("pending", "failed")]
            for o in states
        ]
    finally:
        wiring.close()
    if args.json:
        print(
            orjson.dumps(
                plan_json(outcome, pending, failures), option=orjson.OPT_INDENT_2, default=str
            ).decode()
        )
    else:
        print_plan(outcome, pending, failures)
    return 0 if not failures else 1


def _pull_only(wiring: Wiring) -> dict[str, str]:
    from sync.cycle import ConnectionReport, pull_connection

    store = wiring.store()
    run_id = store.start_run(trigger="plan")
    failures: dict[str, str] = {}
    from connectors.errors import ConnectorError

    for rt in wiring.runtimes():
        try:
            pull_connection(store, rt, run_id, threading.Event(), ConnectionReport(rt.name))
        except ConnectorError as exc:
            failures[rt.name] = f"{type(exc).__name__}: {exc}"
    store.finish_run(
        run_id,
        status="ok" if not failures else "partial",
        counts={"pull_only": True},
        error="; ".join(failures.values()) or None,
    )
    return failures


def plan_json(outcome: Outcome, pending: list[Any], failures: dict[str, str]) -> dict[str, Any]:
    return {
        "writes": [
            {
                "connection": w.connection,
                "entity": w.entity,
                "record": w.external_id,
                "field": w.field,
                "old": w.previous,
                "new": w.value,
                "rule": w.rule,
                "output": w.output,
            }
            for w in outcome.planned
        ],
        "held_back": [
            {
                "connection": h.connection,
                "entity": h.entity,
                "record": h.external_id,
                "field": h.field,
                "current": h.current,
                "wanted": h.value,
                "why": h.why,
            }
            for h in outcome.held
        ],
        "queued_from_earlier_cycles": [
            {
                "connection": o.connection,
                "entity": o.entity,
                "record": o.external_id,
                "field": o.field,
                "new": o.value,
                "state": o.state,
                "attempts": o.attempts,
                "last_error": o.last_error,
            }
            for o in pending
        ],
        "failed_connections": failures,
        "stats": outcome.stats,
    }


def print_plan(outcome: Outcome, pending: list[Any], failures: dict[str, str]) -> None:
    for name, problem in failures.items():
        print(f"! {name} could not be refreshed: {problem}")
    by_conn: dict[str, list[Any]] = {}
    for w in outcome.planned:
        by_conn.setdefault(w.connection, []).append(w)
    if not outcome.planned:
        print("No writes needed: every CRM already shows what the policy says.")
    for connection, writes in sorted(by_conn.items()):
        print(f"{connection}: {len(writes)} write(s)")
        for w in sorted(writes, key=lambda x: (x.entity, x.external_id, x.field)):
            print(
                f"  {w.entity} {w.external_id} {w.field}: {w.previous!r} -> {w.value!r}  [{w.rule}]"
            )
    if outcome.held:
        print(f"held back (a person changed these fields): {len(outcome.held)}")
        for h in outcome.held[:50]:
            print(
                f"  {h.connection} {h.entity} {h.external_id} {h.field}: keeps {h.current!r}"
                f" (policy wants {h.value!r}); {h.why}"
            )
    if pending:
        print(f"already queued from earlier cycles: {len(pending)}")
