"""Plan and record a full evaluation one batch of customers at a time.

A full evaluation streams the store (:mod:`sync.scale`): each batch of customers arrives
evaluated, with the facts it came from and what we wrote to those records.
:class:`BatchPlanner` plans that batch's writes and, when recording, upserts its findings,
adds its notifications and queues its writes before the next batch is read; it keeps
only what must outlive the batch: counts, the keys of the findings seen (to resolve the
others at the end), next thresholds, the scorecard sums, and the detail a small store's
caller prints (planned writes, findings).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from connectors.base import Entity
from rules.engine import Evaluation
from rules.model import CONFLICT_KINDS, Finding
from rules.scorecards import ScorecardTally
from state.rows import OutboxItemIn
from sync.checkpoints import checkpoint
from sync.cycle import EvaluationStopped, Runtime
from sync.findings import finding_key, finding_rows, json_value, notifications_for, rules_by_record
from sync.plan import HeldBack, PlannedWrite, Target, plan_writes
from sync.scale_stream import Batch, Written
from sync.visibility import Audience, Secrets

Key = tuple[str, str, str]  # (connection, entity, external id)


def targets_for(runtimes: Iterable[Runtime]) -> dict[str, Target]:
    """What the planner knows of each connection: its audience and write-back fields."""
    return {
        rt.name: Target(
            audience=Audience(rt.role, rt.distributor_id),
            writes={e.value: dict(rt.mapping.writes(e)) for e in Entity},
        )
        for rt in runtimes
    }


def current_values(store: Any, desired: Mapping[Key, Mapping[str, Any]],
                   targets: Mapping[str, Target]) -> dict[Key, Mapping[str, Any]]:
    """The vendor fields as last read, of the records of ``desired`` with an output their
    connection writes: only those can need a write, so the rest are not read at all."""
    wanted: list[Key] = []
    for key, outputs in desired.items():
        target = targets.get(key[0])
        specs = target.writes.get(key[1]) if target is not None else None
        if specs and any(output in specs for output in outputs):
            wanted.append(key)
    return {key: raw for key, (_etag, raw) in store.current_values_of(wanted).items()}


class BatchPlanner:
    """The ``consume`` of a full evaluation. Pickles without its store: in a worker
    process it opens its own from ``url`` (a SQLite file, which both processes write a
    batch at a time)."""

    def __init__(
        self, store: Any, runtimes: Sequence[Runtime], *, secrets: Secrets, now: datetime,
        record: bool, tally: ScorecardTally | None, keep_writes: int | None,
        stop: threading.Event | None = None,
    ) -> None:
        self._store: Any = store
        self._opened = False  # the store is the caller's
        # a worker process opens the store by its URL: a SQLite file, no credentials in it
        self.url = str(store.engine.url) if store.dialect == "sqlite" else None
        # no connector crosses a process boundary; the targets are made again there
        self.runtimes = [replace(rt, connector=cast(Any, None)) for rt in runtimes]
        self.targets = targets_for(self.runtimes)
        self.secrets, self.now, self.record = secrets, now, record
        self.stop = stop  # looked at before each batch here; a worker ends when the pool closes
        self.tally = tally
        self.keep_writes = keep_writes  # None: every planned write and held-back value
        self.keep_findings = True
        self.planned: list[PlannedWrite] = []
        self.held: list[HeldBack] = []
        self.findings: list[Finding] = []
        self.conflicts: list[Finding] = []  # this run's, for the scorecards' conflict counts
        self.seen: set[str] = set()
        self.thresholds: dict[str, datetime] = {}
        self.counts: dict[str, int] = dict.fromkeys(
            ("opportunities", "planned_writes", "held_back", "findings_opened",
             "notifications_new", "queued"), 0)
        self.kinds: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_store", "targets", "stop")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._store, self._opened, self.stop = None, False, None
        self.targets = targets_for(self.runtimes)

    @property
    def store(self) -> Any:
        if self._store is None:
            from state.store import Store

            if self.url is None:
                raise RuntimeError("only a SQLite store is evaluated by a second process")

            self._store, self._opened = Store.from_url(self.url), True
        return self._store

    def close(self) -> None:
        """Close the store this planner opened itself (in a worker process)."""
        if self._store is not None and self._opened:
            self._store.close()
            self._store = None

    def __call__(self, batch: Batch) -> None:
        if self.stop is not None and self.stop.is_set():
            raise EvaluationStopped
        evaluation = batch.evaluation
        desired = {(k.connection, k.entity, k.external_id): v
                   for k, v in evaluation.desired.items()}
        planned, held = self.plan(desired, rules_by_record(evaluation.findings),
                                  batch.ledgers, batch.in_flight)
        self.counts["opportunities"] += len(batch.opportunities)
        self.thresholds.update(evaluation.next_thresholds)
        if self.tally is not None:
            self.tally.add(batch.accounts, batch.opportunities,
                           evaluation.registrations if evaluation.keep_registrations else None)
        self.take(evaluation.findings, planned, held)

    def plan(self, desired: Mapping[Key, Mapping[str, Any]], rules: Mapping[Key, str],
             ledgers: Written, in_flight: Written
             ) -> tuple[list[PlannedWrite], list[HeldBack]]:
        """The writes ``desired`` needs, against the values last read from the CRMs."""
        return plan_writes(desired=desired, rules=rules, targets=self.targets,
                           current=current_values(self.store, desired, self.targets),
                           ledger=ledgers, secrets=self.secrets, in_flight=in_flight)

    def take(self, findings: Sequence[Finding], planned: Sequence[PlannedWrite],
             held: Sequence[HeldBack]) -> None:
        """Count and keep what a batch found and planned; record it when recording."""
        for finding in findings:
            self.kinds[finding.kind] = self.kinds.get(finding.kind, 0) + 1
        if self.record:  # the others are resolved at the end
            self.seen.update(map(finding_key, findings))
        self.conflicts.extend(f for f in findings if f.kind in CONFLICT_KINDS)
        if self.keep_findings:
            self.findings.extend(findings)
        self.counts["planned_writes"] += len(planned)
        self.counts["held_back"] += len(held)
        self._keep(self.planned, planned)
        self._keep(self.held, held)
        if not self.record:
            return
        store = self.store
        if findings:
            delta = store.upsert_findings(finding_rows(findings), now=self.now, complete=False)
            self.counts["findings_opened"] += len(delta.opened)
            self.counts["notifications_new"] += store.add_notifications(
                notifications_for(findings))
        if planned:
            self.counts["queued"] += store.enqueue([outbox_item(w) for w in planned])
        checkpoint("evaluate.batch_recorded")

    def _keep(self, kept: list[Any], new: Sequence[Any]) -> None:
        if self.keep_writes is None:
            kept.extend(new)
        else:
            kept.extend(new[:max(self.keep_writes - len(kept), 0)])

    def merge(self, other: BatchPlanner) -> None:
        """Add what another process's planner did (its share of the customers)."""
        self.planned.extend(other.planned)
        self.held.extend(other.held)
        self.findings.extend(other.findings)
        self.conflicts.extend(other.conflicts)
        self.seen |= other.seen
        self.thresholds.update(other.thresholds)
        for name, n in other.counts.items():
            self.counts[name] += n
        for kind, n in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        if self.tally is not None and other.tally is not None:
            self.tally.merge(other.tally)

    def evaluation(self) -> Evaluation:
        """What the caller of a small store gets back: findings and next thresholds."""
        return Evaluation(findings=list(self.findings), next_thresholds=dict(self.thresholds))


def outbox_item(w: PlannedWrite) -> OutboxItemIn:
    return OutboxItemIn(connection=w.connection, entity=w.entity, external_id=w.external_id,
                        field=w.field, value=json_value(w.value),
                        previous=json_value(w.previous), rule=w.rule, reason=w.reason)
