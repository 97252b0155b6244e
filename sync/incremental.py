"""Incremental evaluation: re-match and re-evaluate only the customers something touched.

A customer is re-evaluated when one of its records changed since the last evaluated
generation (before or after re-matching: a record that moves re-evaluates both
customers), when its next time threshold passed, or when a person's match decision
touched its accounts. Customers are independent (:mod:`rules.engine`), so the findings
and writes of the others stand. The first cycle, a changed configuration (mapping,
policy, matching; hashed), a forced run and every ``full_every`` run a full evaluation
(:func:`sync.evaluate.evaluate_store`); distributor scorecards, aggregates over all
customers, are refreshed by those full runs only.

A daemon keeps the :class:`rules.match_index.MatchIndex` in memory between cycles (per
Store object); a fresh process rebuilds it, then evaluates only the changed customers
(:mod:`sync.rematch`).
Changes only to vendor fields outside the canonical ones (a person flipping a flag we
own) are not seen as changes: the next full run corrects them.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

import structlog

from rules.engine import evaluate
from rules.match_index import MatchIndex
from rules.matching import MatchSettings
from rules.model import Policy
from rules.scorecards import ScorecardConfig
from state.rows import AccountRow, OpportunityRow
from state.rows import RecordKey as StoreKey
from sync.batches import current_values, outbox_item, targets_for
from sync.cycle import Runtime
from sync.evaluate import (
    Outcome,
    evaluate_store,
    group_token,
    secrets_for,
    unmatched_thresholds,
)
from sync.findings import count_kinds, finding_rows, notifications_for, rules_by_record
from sync.plan import plan_writes
from sync.rematch import AccountKey, collector_paused, rematch, save_area
from sync.snapshot import build_snapshot
from sync.visibility import Secrets

log = structlog.get_logger(__name__)

STATE = "incremental"
FULL_EVERY = timedelta(days=1)


@dataclass(slots=True)
class Engine:
    """What a long-running process keeps between cycles."""

    index: MatchIndex | None = None
    settings: MatchSettings | None = None
    # what partners must never see, read once and grown with the records each cycle loads
    # (a value that leaves the store stays: hiding too much is the safe side)
    secrets: Secrets | None = None
    token: str | None = None  # written with the state: tells whether another process ran


_ENGINES: WeakKeyDictionary[Any, Engine] = WeakKeyDictionary()


def engine_for(store: Any) -> Engine:
    """The engine kept for ``store`` in this process (a fresh one the first time)."""
    found = _ENGINES.get(store)
    if found is None:
        found = _ENGINES[store] = Engine()
    return found


def config_hash(
    runtimes: Sequence[Runtime], policy: Policy, settings: MatchSettings,
    scorecards: ScorecardConfig | None,
) -> str:
    """What evaluation depends on besides the records: a change forces a full run."""
    parts = [repr(policy), repr(settings), repr(scorecards)]
    for rt in sorted(runtimes, key=lambda r: r.name):
        parts.append(repr((rt.name, rt.vendor, rt.role, rt.distributor_id,
                           rt.channel_manager, rt.mapping)))
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def evaluate_incremental(
    store: Any,
    runtimes: Sequence[Runtime],
    *,
    policy: Policy,
    match_settings: MatchSettings,
    now: datetime,
    run_id: int,
    scorecards: ScorecardConfig | None = None,
    full_every: timedelta = FULL_EVERY,
    force_full: bool = False,
    engine: Engine | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Evaluate what changed since the last evaluation (or everything when due)."""
    engine = engine if engine is not None else engine_for(store)
    read_at = datetime.now(UTC)  # every row touched before this is seen by this evaluation
    # ... unless another run (a ``plan`` or ``sync --once`` beside the daemon) is pulling:
    # its pages are stamped from its start and may commit after this evaluation reads
    overlap = store.overlap(run_id)
    watermark, busy_since = overlap.generation, overlap.busy_since
    state = store.engine_state(STATE) or {}
    digest = config_hash(runtimes, policy, match_settings, scorecards)
    decisions = store.match_decisions()
    seen = {_decision_id(d): d.verdict for d in decisions}
    full_at = state.get("full_at")
    if state.get("token") != engine.token:
        engine.index = engine.secrets = None  # another process evaluated since: stale
    engine.token = uuid.uuid4().hex
    if (force_full or state.get("config") != digest or full_at is None
            or now - datetime.fromisoformat(full_at) >= full_every
            or engine.settings not in (None, match_settings)):
        # every evaluation since the last full one kept each evaluated deal's account:
        # only deals changed after the last evaluated generation need writing again
        since = state.get("generation")
        # the index is rebuilt after a full evaluation anyway: dropped first, so the two
        # never hold memory at once (about 2 GB and 1.4 GB at a million accounts)
        engine.index = engine.secrets = None
        outcome = evaluate_store(store, runtimes, policy=policy, match_settings=match_settings,
                                 now=now, scorecards=scorecards, stop=stop,
                                 refs_since=None if since is None else int(since))
        engine.settings = match_settings
        store.save_engine_state(STATE, {"generation": watermark, "config": digest,
                                        "full_at": now.isoformat(), "decisions": seen,
                                        "token": engine.token,
                                        "touched_from": touched_from(read_at, busy_since)})
        outcome.stats["evaluation"] = "full"
        return outcome
    done = {**state, "generation": watermark, "decisions": seen, "token": engine.token,
            "pending": [], "touched_from": touched_from(read_at, busy_since)}
    with collector_paused():
        return _partial(store, runtimes, engine, policy=policy, settings=match_settings,
                        now=now, state=state, decisions=decisions, done=done,
                        new_decisions=[d for d in decisions
                                       if state.get("decisions", {}).get(_decision_id(d))
                                       != d.verdict])


def touched_from(read_at: datetime, busy_since: datetime | None) -> str:
    """Where the next evaluation looks for touched rows: from when this one read them, so
    rows this cycle pulled (our echoes above all) are not evaluated a second time; from the
    start of another run that was still pulling then, whatever its id, as its pages may
    have committed after this evaluation read."""
    return min(read_at, busy_since or read_at).isoformat()


def _decision_id(d: Any) -> str:
    return "\x1f".join((*d.a, *d.b))


def _partial(
    store: Any, runtimes: Sequence[Runtime], engine: Engine, *, policy: Policy,
    settings: MatchSettings, now: datetime, state: Mapping[str, Any], decisions: Sequence[Any],
    new_decisions: Sequence[Any], done: Mapping[str, Any],
) -> Outcome:
    by_name = {rt.name: rt for rt in runtimes}
    since = int(state.get("generation", 0))
    changed_keys = store.changed_since(since)
    if state.get("touched_from"):
        # rows whose only change is in vendor fields we write (a person cleared a flag we
        # own, or our own echo): re-evaluate them too, so middleware-owned values come back
        changed_keys |= store.touched_since(datetime.fromisoformat(state["touched_from"]))
    changed = [k for k in changed_keys if k.connection in by_name]
    changed_accounts = [(k.connection, k.external_id) for k in changed if k.entity == "account"]
    changed_opps = [(k.connection, k.external_id) for k in changed if k.entity == "opportunity"]

    # 1. matching: update the index (or rebuild it in a fresh process)
    match, area, removed, rebuilt = rematch(store, engine, by_name, settings,
                                            changed_accounts, decisions, new_decisions)
    index = engine.index
    assert index is not None  # rematch leaves a built index
    opp_rows = [o for o in store.opportunities_by_keys(changed_opps) if o.connection in by_name]
    previous_refs = store.evaluated_refs(changed_opps)
    wanted_old = {*area, *removed, *changed_accounts}
    wanted_old |= {(c, r) for (c, _), r in previous_refs.items() if r is not None}
    old_links = store.links_of(wanted_old)
    new_link = index.links.get

    customers: set[str] = set()
    tokens: set[str] = set()
    edited = set(changed_accounts)  # asked once per re-matched account
    for key in {*edited, *removed, *area}:
        old = old_links[key][0] if key in old_links else None
        link = new_link(key)
        new = link.customer_id if link is not None else None
        if key in area and old == new and key not in edited:
            continue  # re-matched but not moved, and unchanged itself
        customers.update(c for c in (old, new) if c is not None)
        tokens.add(group_token(key[0], "", key[1]))  # deals of an account that came or went
    for (connection, ext_id), ref in previous_refs.items():
        old_link = old_links.get((connection, ref)) if ref is not None else None
        if old_link is not None:
            customers.add(old_link[0])
        else:
            tokens.add(group_token(connection, ext_id, ref))
    for o in opp_rows:
        link = new_link((o.connection, o.account_ref)) if o.account_ref else None
        if link is not None:
            customers.add(link.customer_id)
        else:
            tokens.add(group_token(o.connection, o.external_id, o.account_ref))
    # groups of an evaluation that stopped half-way (its links may already be saved)
    for group in [*store.due_groups(now), *state.get("pending", [])]:
        (tokens if group.startswith("~") else customers).add(group)
    pending = sorted(customers | tokens)
    if pending != state.get("pending", []):  # else the stored state already says so
        store.save_engine_state(STATE, {**state, "pending": pending})

    # 2. persist the moved links, then load exactly the affected groups
    save_area(store, index, match, area, removed, rebuilt=rebuilt, stored=old_links)
    accounts, opportunities = store.records_of_customers(customers)
    opportunities += _token_groups(store, tokens, index)
    accounts = [a for a in accounts if a.connection in by_name]
    opportunities = [o for o in opportunities if o.connection in by_name]
    links = {(a.connection, a.external_id): index.links[(a.connection, a.external_id)]
             .customer_id for a in accounts if (a.connection, a.external_id) in index.links}
    for o in opportunities:
        ref = (o.connection, o.account_ref or "")
        if ref in index.links:
            links[ref] = index.links[ref].customer_id
    keys_of: dict[str, list[tuple[str, str]]] = {}
    for a in accounts:
        keys_of.setdefault(a.connection, []).append(("account", a.external_id))
    for o in opportunities:
        keys_of.setdefault(o.connection, []).append(("opportunity", o.external_id))
    ledgers, writing = store.written_values({rt.name: keys_of.get(rt.name, [])
                                             for rt in runtimes})
    snapshot = build_snapshot(accounts=accounts, opportunities=opportunities, links=links,
                              runtimes=by_name, ledgers=ledgers, in_flight=writing)
    evaluation = evaluate(snapshot, policy, now)

    # 3. plan only these records
    desired = {(k.connection, k.entity, k.external_id): v for k, v in evaluation.desired.items()}
    targets = targets_for(runtimes)
    planned, held = plan_writes(
        desired=desired, rules=rules_by_record(evaluation.findings), targets=targets,
        current=current_values(store, desired, targets), ledger=ledgers,
        secrets=_secrets(store, runtimes, engine, accounts, opportunities), in_flight=writing,
    )

    # 4. findings of the affected groups (upsert the new, resolve the vanished), the
    # outbox, what the next cycle needs and the evaluation's state: one transaction, so a
    # crash leaves all of it to the next evaluation, which redoes the same groups
    rows = finding_rows(evaluation.findings)
    subjects = {StoreKey(a.connection, "account", a.external_id) for a in accounts}
    subjects |= {StoreKey(o.connection, "opportunity", o.external_id) for o in opportunities}
    subjects |= {StoreKey(*k) for k in changed}
    thresholds = {c: t for c, t in evaluation.next_thresholds.items()}
    thresholds.update(unmatched_thresholds(snapshot, policy, now))
    with store.atomic():
        opened = store.upsert_findings(rows, now=now, complete=False).opened
        vanished = store.open_finding_keys(customers, subjects) - {r.key for r in rows}
        resolved = store.resolve_findings(sorted(vanished), now=now) if vanished else 0
        notifications = store.add_notifications(notifications_for(evaluation.findings))
        queued = store.enqueue([outbox_item(w) for w in planned])
        store.save_thresholds(thresholds, replacing=customers | tokens)
        store.save_evaluated_refs(*_moved_refs(opp_rows, previous_refs))
        store.save_engine_state(STATE, done)
    stats = {
        "evaluation": "incremental",
        "changed_records": len(changed),
        "rematched_accounts": len(area),
        "customers": len(customers),
        "accounts": len(accounts),
        "opportunities": len(opportunities),
        "review_items": len(index.review),
        "findings": count_kinds(evaluation.findings),
        "planned_writes": len(planned),
        "held_back": len(held),
        "findings_opened": len(opened),
        "findings_resolved": resolved,
        "notifications_new": notifications,
        "queued": queued,
    }
    log.info("evaluated", **{k: v for k, v in stats.items() if not isinstance(v, dict)})
    return Outcome(match, evaluation, planned, held, stats)


def _moved_refs(
    opp_rows: Sequence[OpportunityRow], previous: Mapping[tuple[str, str], str | None],
) -> tuple[dict[tuple[str, str], str | None], list[tuple[str, str]]]:
    """The changed deals whose evaluated account must be written (new ones and those whose
    account moved: an edited amount keeps its row), and those to forget (deleted)."""
    refs: dict[tuple[str, str], str | None] = {}
    gone: list[tuple[str, str]] = []
    for o in opp_rows:
        key = (o.connection, o.external_id)
        if o.deleted:
            if key in previous:
                gone.append(key)
        elif key not in previous or previous[key] != o.account_ref:
            refs[key] = o.account_ref
    return refs, gone


def _token_groups(store: Any, tokens: Iterable[str], index: MatchIndex) -> list[OpportunityRow]:
    """The live deals of customer-less groups (a deal without an account, or whose account
    is gone or unmatched)."""
    by_account: list[AccountKey] = []
    lone: list[AccountKey] = []
    for token in tokens:
        kind, connection, ext_id = token.split("|", 2)
        (by_account if kind == "~acct" else lone).append((connection, ext_id))
    found = [o for o in store.opportunities_of_accounts(by_account)
             if (o.connection, o.account_ref) not in index.links]
    found += [o for o in store.opportunities_by_keys(lone)
              if not o.deleted and o.account_ref is None]
    return found


def _secrets(store: Any, runtimes: Sequence[Runtime], engine: Engine,
             accounts: Sequence[AccountRow], opportunities: Sequence[OpportunityRow]) -> Secrets:
    """The secrets over the whole store: read the first time, then grown with the
    distributor ids and internal users of the records this cycle loaded (every changed
    record is among them)."""
    if engine.secrets is None:
        engine.secrets = secrets_for(store, runtimes)
        return engine.secrets
    internal = {rt.name for rt in runtimes if rt.role != "distributor"}
    distributors = {o.registered_by for o in opportunities if o.registered_by}
    distributors |= {a.partner_id for a in accounts if a.partner_id}
    users = {a.owner_user for a in accounts if a.owner_user and a.connection in internal}
    users |= {o.owner_user for o in opportunities if o.owner_user and o.connection in internal}
    known = engine.secrets
    engine.secrets = Secrets.of(known.distributor_ids | distributors,
                                known.internal_users | users)
    return engine.secrets
