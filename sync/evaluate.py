"""Between pull and push: match customers, evaluate the policy, plan the writes.

Reads the store, calls the pure functions in :mod:`rules`, writes back links, review
items, findings, notifications and outbox items. Only the sync layer touches both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from connectors.base import Entity
from rules.engine import Evaluation, evaluate
from rules.matching import MatchResult, MatchSettings
from rules.model import Policy
from rules.scorecards import (
    ScorecardConfig,
    ScorecardReport,
    compute_scorecards,
    scorecard_desired,
)
from state.rows import AccountRow, OpportunityRow, OutboxItemIn
from sync.cycle import Runtime
from sync.findings import (
    count_kinds,
    finding_rows,
    json_value,
    notifications_for,
    rules_by_record,
    stored_findings,
)
from sync.plan import HeldBack, PlannedWrite, Target, plan_writes
from sync.snapshot import (
    build_snapshot,
    in_flight,
    match_customers,
    save_match,
    snapshot_from_store,
)
from sync.visibility import Audience, Secrets

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one evaluation produced (the ``plan`` command prints it)."""

    match: MatchResult
    evaluation: Evaluation
    planned: list[PlannedWrite]
    held: list[HeldBack]
    stats: dict[str, Any]


def targets_for(runtimes: Iterable[Runtime]) -> dict[str, Target]:
    return {
        rt.name: Target(
            audience=Audience(rt.role, rt.distributor_id),
            writes={e.value: dict(rt.mapping.writes(e)) for e in Entity},
        )
        for rt in runtimes
    }



def secrets_for(
    runtimes: Iterable[Runtime],
    accounts: Sequence[AccountRow],
    opportunities: Sequence[OpportunityRow],
) -> Secrets:
    runtimes = list(runtimes)
    internal = {rt.name for rt in runtimes if rt.role != "distributor"}
    users = {a.owner_user for a in accounts if a.connection in internal and a.owner_user}
    users |= {o.owner_user for o in opportunities if o.connection in internal and o.owner_user}
    distributors = {rt.distributor_id for rt in runtimes if rt.distributor_id}
    distributors |= {o.registered_by for o in opportunities if o.registered_by}
    distributors |= {a.partner_id for a in accounts if a.partner_id}
    return Secrets.of(distributors, users)



def stored_scorecards(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, now: datetime,
    config: ScorecardConfig, territory: str | None = None,
) -> ScorecardReport:
    """Distributor scorecards over the store as the last cycle left it (the report
    command, the demo), with the findings kept over the period."""
    return compute_scorecards(snapshot_from_store(store, runtimes), policy, now, config,
                              findings=stored_findings(store), territory=territory)


def evaluate_store(
    store: Any,
    runtimes: Sequence[Runtime],
    *,
    policy: Policy,
    match_settings: MatchSettings,
    now: datetime,
    record: bool = True,
    scorecards: ScorecardConfig | None = None,
) -> Outcome:
    """Match, evaluate and plan over the whole store. With ``record`` false nothing is
    written (the dry run behind ``channelsync plan``)."""
    by_name = {rt.name: rt for rt in runtimes}
    accounts = [a for a in store.load_accounts() if a.connection in by_name]
    opportunities = [o for o in store.load_opportunities() if o.connection in by_name]
    match = match_customers(store, accounts, match_settings)
    if record:
        save_match(store, match, accounts)
    links = {key: link.customer_id for key, link in match.links.items()}
    ledgers = {rt.name: store.ledger(rt.name) for rt in runtimes}
    writing = in_flight(store, by_name)
    snapshot = build_snapshot(
        accounts=accounts,
        opportunities=opportunities,
        links=links,
        runtimes=by_name,
        ledgers=ledgers,
        in_flight=writing,
    )
    evaluation = evaluate(snapshot, policy, now)
    desired = {(k.connection, k.entity, k.external_id): v for k, v in evaluation.desired.items()}
    if scorecards is not None:
        # headline figures on each distributor's partner account, internal CRMs only
        report = compute_scorecards(snapshot, policy, now, scorecards,
                                    findings=[*stored_findings(store), *evaluation.findings])
        for key, values in scorecard_desired(snapshot, report).items():
            k = (key.connection, key.entity, key.external_id)
            desired[k] = {**desired.get(k, {}), **values}
    current: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for rt in runtimes:
        for entity in Entity:
            ids = [
                k.external_id
                for k in evaluation.desired
                if k.connection == rt.name and k.entity == entity.value
            ]
            for ext_id, (_etag, raw) in store.current_values(rt.name, entity.value, ids).items():
                current[(rt.name, entity.value, ext_id)] = raw
    rules = rules_by_record(evaluation.findings)
    planned, held = plan_writes(
        desired=desired,
        rules=rules,
        targets=targets_for(runtimes),
        current=current,
        ledger=ledgers,
        secrets=secrets_for(runtimes, accounts, opportunities),
        in_flight=writing,
    )
    stats = {
        "customers": len({link.customer_id for link in match.links.values()}),
        "accounts": len(accounts),
        "opportunities": len(opportunities),
        "review_items": len(match.review),
        "findings": count_kinds(evaluation.findings),
        "planned_writes": len(planned),
        "held_back": len(held),
    }
    if record:
        delta = store.upsert_findings(finding_rows(evaluation.findings), now=now)
        stats["findings_opened"] = len(delta.opened)
        stats["findings_resolved"] = len(delta.resolved)
        stats["notifications_new"] = store.add_notifications(notifications_for(evaluation.findings))
        stats["queued"] = store.enqueue(
            [
                OutboxItemIn(
                    connection=w.connection,
                    entity=w.entity,
                    external_id=w.external_id,
                    field=w.field,
                    value=json_value(w.value),
                    previous=json_value(w.previous),
                    rule=w.rule,
                    reason=w.reason,
                )
                for w in planned
            ]
        )
    log.info("evaluated", **{k: v for k, v in stats.items() if not isinstance(v, dict)})
    return Outcome(match, evaluation, planned, held, stats)
