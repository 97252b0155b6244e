"""Between pull and push: match customers, evaluate the policy, plan the writes.

Reads the store, calls the pure functions in :mod:`rules`, writes back links, review
items, findings, notifications and outbox items. Only the sync layer touches both.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from connectors.base import Entity
from rules.engine import Evaluation, evaluate, next_threshold
from rules.matching import MatchResult, MatchSettings
from rules.model import Policy, RecordKey, Snapshot
from rules.scorecards import (
    ScorecardConfig,
    ScorecardReport,
    ScorecardTally,
    compute_scorecards,
    scorecard_desired,
)
from sync.batches import BatchPlanner
from sync.checkpoints import checkpoint
from sync.cycle import Runtime
from sync.findings import stored_findings
from sync.plan import HeldBack, PlannedWrite
from sync.scale import Batch, evaluate_at_scale
from sync.snapshot import as_decision, build_snapshot, review_rows, snapshot_from_store
from sync.visibility import Secrets

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one evaluation produced (the ``plan`` command prints it)."""

    match: MatchResult
    evaluation: Evaluation
    planned: list[PlannedWrite]
    held: list[HeldBack]
    stats: dict[str, Any]


def secrets_for(store: Any, runtimes: Sequence[Runtime]) -> Secrets:
    """What a partner must never see: every distributor id, and the users of internal
    connections, over the whole store."""
    internal = [rt.name for rt in runtimes if rt.role != "distributor"]
    distributors, users = store.secret_values(internal)
    distributors |= {rt.distributor_id for rt in runtimes if rt.distributor_id}
    return Secrets.of(distributors, users)


def group_token(connection: str, opportunity: str, account_ref: str | None) -> str:
    """The group of an opportunity without a customer (as :mod:`rules.engine` groups it)."""
    if account_ref is None:
        return f"~opp|{connection}|{opportunity}"
    return f"~acct|{connection}|{account_ref}"


def unmatched_thresholds(snapshot: Snapshot, policy: Policy, now: datetime
                         ) -> dict[str, datetime]:
    """Next thresholds of the customer-less groups of ``snapshot``, by group token."""
    groups: dict[str, list[Any]] = {}
    for opp in snapshot.opportunities:
        if opp.customer_id is None:
            ref = opp.account_key.external_id if opp.account_key else None
            groups.setdefault(group_token(opp.key.connection, opp.key.external_id, ref),
                              []).append(opp)
    out: dict[str, datetime] = {}
    for token, opps in groups.items():
        instant = next_threshold(Snapshot(accounts=(), opportunities=tuple(opps)), policy, now)
        if instant is not None:
            out[token] = instant
    return out


def stored_scorecards(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, now: datetime,
    config: ScorecardConfig, territory: str | None = None,
) -> ScorecardReport:
    """Distributor scorecards over the store as the last cycle left it (the report
    command, the demo), with the findings kept over the period."""
    return compute_scorecards(snapshot_from_store(store, runtimes), policy, now, config,
                              findings=stored_findings(store), territory=territory)


AccountKey = tuple[str, str]  # (connection, external id)
# a full evaluation goes through the store this many customers at a time
BATCH = 4000
# from this many accounts a SQLite file store is evaluated by two processes (the second
# costs about half a second to start)
PARALLEL_FROM = 100_000
# above this many accounts an outcome keeps counts, not every link, finding and write
# (a recording run queued them; ``plan`` lists every write whatever the size)
KEEP_DETAIL = 200_000


def evaluate_store(
    store: Any,
    runtimes: Sequence[Runtime],
    *,
    policy: Policy,
    match_settings: MatchSettings,
    now: datetime,
    record: bool = True,
    scorecards: ScorecardConfig | None = None,
    batch: int = BATCH,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    refs_since: int | None = None,
) -> Outcome:
    """Match, evaluate and plan over the whole store, streamed: every account is
    matched, then the customers are read, evaluated, planned and (with ``record``) their
    findings and writes stored a ``batch`` at a time (:mod:`sync.scale`,
    :class:`sync.batches.BatchPlanner`); then the deals of no customer, the scorecards
    and the findings no longer found. With ``record`` false nothing is written (the dry
    run behind ``channelsync plan``). ``workers``: processes (None: two for a large
    SQLite file store, else one); ``progress`` is told each stage as it ends. A set
    ``stop`` ends it before the next batch (:class:`sync.cycle.EvaluationStopped`).
    ``refs_since``: the generation up to which the incremental engine's record of each
    deal's account is right (only deals changed since are written again)."""
    by_name = {rt.name: rt for rt in runtimes}
    connections = list(by_name)
    links_before = store.account_links()
    decisions = [as_decision(d) for d in store.match_decisions()]
    # the values partners must not see, read only when a partner's CRM gets writes
    partner_writes = any(rt.role == "distributor" and any(rt.mapping.writes(e) for e in Entity)
                         for rt in runtimes)
    secrets = secrets_for(store, runtimes) if partner_writes else Secrets.of(set(), set())
    planner = BatchPlanner(
        store, runtimes, secrets=secrets, now=now, record=record,
        tally=ScorecardTally(policy, now, scorecards) if scorecards is not None else None,
        keep_writes=None if not record else KEEP_DETAIL, stop=stop)
    kept: dict[str, Any] = {}

    def matched(match: MatchResult) -> None:
        large = len(match.links) > KEEP_DETAIL
        planner.keep_findings = not large
        kept["match"] = MatchResult(links={}, review=match.review) if large else match
        if record:
            save_links(store, match, links_before)
        else:  # the deals of no customer are found against the new links, not the stored
            kept["linked"] = set(match.links)
        links_before.clear()  # a million entries on a large store: not kept

    if workers is None:
        workers = 2 if _parallel(store, connections) else 1
    run = evaluate_at_scale(
        store, runtimes, policy=policy, settings=match_settings, now=now,
        previous=_CustomerOf(links_before), decisions=decisions,
        consume=planner, batch=batch, workers=workers, on_match=matched,
        written=store.has_written(), progress=progress, save_keys=record)
    for other in run.consumers[1:]:
        planner.merge(other)
    lonely = _evaluate_unmatched(store, by_name, planner, policy, now, kept.get("linked"))
    if scorecards is not None:
        assert planner.tally is not None
        report = planner.tally.report(findings=stored_findings(store, planner.conflicts))
        _plan_scorecards(store, planner, scorecard_desired(planner.tally.partners, report))
    if progress is not None:
        progress("unmatched_and_scorecards")
    match: MatchResult = kept["match"]
    stats: dict[str, Any] = {
        "customers": run.customers,
        "accounts": run.accounts,
        "opportunities": planner.counts["opportunities"],
        "review_items": run.review_items,
        "findings": dict(sorted(planner.kinds.items())),
        "planned_writes": planner.counts["planned_writes"],
        "held_back": planner.counts["held_back"],
    }
    if record:
        vanished = store.open_finding_keys_all() - planner.seen
        stats["findings_opened"] = planner.counts["findings_opened"]
        stats["findings_resolved"] = (store.resolve_findings(sorted(vanished), now=now)
                                      if vanished else 0)
        stats["notifications_new"] = planner.counts["notifications_new"]
        stats["queued"] = planner.counts["queued"]
        # what the incremental cycles after this one start from
        store.save_thresholds({**planner.thresholds, **lonely})
        store.snapshot_opportunity_refs(changed_after=refs_since)
    if progress is not None:
        progress("recorded")
    log.info("evaluated", **{k: v for k, v in stats.items() if not isinstance(v, dict)})
    evaluation = planner.evaluation()
    evaluation.next_thresholds.update(lonely)
    return Outcome(match, evaluation, planner.planned, planner.held, stats)


class _CustomerOf(Mapping[AccountKey, str]):
    """(connection, account id) -> customer id, read through the stored links (a second
    dict of a million entries would cost a hundred MB or more)."""

    def __init__(self, links: Mapping[AccountKey, tuple[str, str, float]]) -> None:
        self.links = links

    def __getitem__(self, key: AccountKey) -> str:
        return self.links[key][0]

    def get(self, key: Any, default: Any = None) -> Any:
        found = self.links.get(key)
        return default if found is None else found[0]

    def __iter__(self) -> Iterator[AccountKey]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)


def _parallel(store: Any, connections: Sequence[str]) -> bool:
    if store.dialect != "sqlite" or not store.engine.url.database or (os.cpu_count() or 1) < 2:
        return False
    return bool(store.count_accounts(connections) >= PARALLEL_FROM)


def save_links(store: Any, match: MatchResult,
               before: Mapping[AccountKey, tuple[str, str, float]]) -> None:
    """The links that changed (customer, method or score) and the review list; links of
    accounts gone are dropped, customers new to the store created."""
    gone = [key for key in before if key not in match.links]
    if gone:
        store.drop_customer_links(gone)
    # streamed to the store: a first evaluation saves every link (a million tuples)
    changed = ((connection, "account", external_id, link.customer_id, link.method,
                float(link.score))
               for (connection, external_id), link in match.links.items()
               if before.get((connection, external_id)) != (link.customer_id, link.method,
                                                            float(link.score)))
    if store.save_customer_links(changed):
        store.name_new_customers()
    store.replace_review_items(review_rows(match))
    checkpoint("evaluate.links_saved")


def _evaluate_unmatched(
    store: Any, by_name: Mapping[str, Runtime], planner: BatchPlanner, policy: Policy,
    now: datetime, linked: set[AccountKey] | None,
) -> dict[str, datetime]:
    """Evaluate and plan the deals whose account matched no customer (or that have none);
    their next thresholds by group token. ``linked``: the accounts the new links link,
    when they were not saved."""
    lonely = [o for o in store.unmatched_opportunities(linked) if o.connection in by_name]
    keys: dict[str, list[tuple[str, str]]] = {}
    for o in lonely:
        keys.setdefault(o.connection, []).append(("opportunity", o.external_id))
    ledgers, writing = store.written_values(keys)
    snapshot = build_snapshot(accounts=[], opportunities=lonely, links={}, runtimes=by_name,
                              ledgers=ledgers, in_flight=writing)
    planner(Batch(evaluate(snapshot, policy, now), [], list(snapshot.opportunities), ledgers,
                  writing))
    return unmatched_thresholds(snapshot, policy, now)


def _plan_scorecards(store: Any, planner: BatchPlanner,
                     desired: Mapping[RecordKey, Mapping[str, Any]]) -> None:
    """Plan the headline figures on the partner accounts (known once every deal is in)."""
    keys: dict[str, list[tuple[str, str]]] = {}
    for key in desired:
        keys.setdefault(key.connection, []).append((key.entity, key.external_id))
    ledgers, writing = store.written_values(keys)
    planned, held = planner.plan(
        {(k.connection, k.entity, k.external_id): v for k, v in desired.items()}, {},
        ledgers, writing)
    planner.take([], planned, held)
