"""The channel rules over a matched snapshot at ``now``: findings and desired output values.

Pure: no I/O, no clock. Customers are independent, so the caller may re-evaluate only
the customers whose records changed plus those returned by :func:`customers_crossing`
(a time threshold passed since the last evaluation) and merge the results.

Desired values (``Evaluation.desired``) hold, per live record, every output the rules
manage; ``conflict_reason`` is a :class:`rules.model.Reason` (or None) to be rendered per
audience. ``routed_to`` is present only on opportunities routed to a channel manager and
``registration_decision`` (None) only where a decision was carried out and must be
cleared. The mappings are read-only and shared between records with equal values.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from rules.conflicts import Conflict, find_conflicts, find_routings
from rules.model import (
    CONFLICT_KINDS,
    AccountFact,
    Finding,
    OpportunityFact,
    Policy,
    Reason,
    RecordKey,
    Snapshot,
)
from rules.ownership import RELEASED_HOLD, OwnerDecision, decide_owner
from rules.registrations import Registration, assess, thresholds

_KIND_ORDER = {kind: index for index, kind in enumerate(CONFLICT_KINDS)}
_DECISION_FINDING = {
    "extend": "registration_extended",
    "reassign": "registration_reassigned",
    "release": "registration_released",
}
GroupKey = Hashable


@dataclass(slots=True)
class Evaluation:
    """What the rules concluded; ``owners`` maps customer id -> owner (None: nobody).
    ``registrations`` is filled only when asked for (``keep_registrations``): at scale the
    findings say what changed, and the full table costs memory."""

    findings: list[Finding] = field(default_factory=list)
    desired: dict[RecordKey, Mapping[str, Any]] = field(default_factory=dict)
    owners: dict[str | None, str | None] = field(default_factory=dict)
    # customer -> the next instant after `now` when time alone changes its state
    next_thresholds: dict[str, datetime] = field(default_factory=dict)
    registrations: dict[RecordKey, Registration] = field(default_factory=dict)
    keep_registrations: bool = False
    # desired mappings without a customer-specific part, shared across customers
    _shared: dict[tuple[Any, ...], Mapping[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )


def group_by_customer(
    snapshot: Snapshot, only_customers: set[str] | None = None
) -> dict[GroupKey, tuple[list[AccountFact], list[OpportunityFact]]]:
    """Records per customer. Unmatched records (no customer id) form a group per account."""
    groups: dict[GroupKey, tuple[list[AccountFact], list[OpportunityFact]]] = {}
    for account in snapshot.accounts:
        cid = account.customer_id
        if only_customers is not None and cid not in only_customers:
            continue
        group_key: GroupKey = cid if cid is not None else ("unmatched", account.key)
        entry = groups.get(group_key)
        if entry is None:
            entry = groups[group_key] = ([], [])
        entry[0].append(account)
    for opp in snapshot.opportunities:
        cid = opp.customer_id
        if only_customers is not None and cid not in only_customers:
            continue
        group_key = cid if cid is not None else ("unmatched", opp.account_key or opp.key)
        entry = groups.get(group_key)
        if entry is None:
            entry = groups[group_key] = ([], [])
        entry[1].append(opp)
    return groups


def evaluate(
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    *,
    only_customers: set[str] | None = None,
    keep_registrations: bool = False,
) -> Evaluation:
    """Evaluate every customer (or only ``only_customers``) of the snapshot at ``now``."""
    groups = group_by_customer(snapshot, only_customers)
    return evaluate_groups(
        (
            (key if isinstance(key, str) else None, accounts, opportunities)
            for key, (accounts, opportunities) in groups.items()
        ),
        policy,
        now,
        keep_registrations=keep_registrations,
    )


def evaluate_groups(
    groups: Iterable[tuple[str | None, Sequence[AccountFact], Sequence[OpportunityFact]]],
    policy: Policy,
    now: datetime,
    *,
    keep_registrations: bool = False,
) -> Evaluation:
    """Evaluate records already grouped per customer (e.g. loaded ordered by customer)."""
    result = Evaluation(keep_registrations=keep_registrations)
    for customer_id, accounts, opportunities in groups:
        evaluate_customer(customer_id, accounts, opportunities, policy, now, into=result)
    return result


def evaluate_customer(
    customer_id: str | None,
    accounts: Sequence[AccountFact],
    opportunities: Sequence[OpportunityFact],
    policy: Policy,
    now: datetime,
    *,
    into: Evaluation | None = None,
) -> Evaluation:
    """Evaluate one customer's records; adds to ``into`` when given."""
    result = into if into is not None else Evaluation()
    live_accounts = [a for a in accounts if not a.deleted]
    live_opps = [o for o in opportunities if not o.deleted]
    registrations: dict[RecordKey, Registration] = {}
    for opp in live_opps:
        if opp.registered_by:
            registration = assess(opp, policy, now)
            if registration is not None:
                registrations[opp.key] = registration
    decision = decide_owner(live_accounts, live_opps, list(registrations.values()), policy, now)
    conflicts = find_conflicts(live_opps, registrations, decision, policy) if live_opps else []
    conflicts.sort(key=lambda c: (_KIND_ORDER[c.kind], c.subject))
    routings = find_routings(live_opps, registrations, decision, policy) if live_opps else []
    routed = {r.opportunity: r.channel_manager for r in routings if r.channel_manager}

    findings = result.findings
    _conflict_findings(customer_id, conflicts, decision, now, findings)
    _registration_findings(customer_id, registrations.values(), now, findings)
    for routing in routings:
        kind = "routed_to_channel_manager" if routing.channel_manager else "routing_unconfigured"
        findings.append(Finding(
            kind, customer_id, routing.opportunity, "routing.channel_manager", routing.evidence,
            {"channel_manager": routing.channel_manager, "owner": decision.owner}, now,
        ))
    if decision.disagreeing:
        findings.append(Finding(
            "owner_disagreement", customer_id, decision.evidence[0], "ownership.explicit",
            decision.disagreeing, {"owner": decision.owner}, now,
        ))

    _desired_values(customer_id, live_accounts, live_opps, decision, conflicts,
                    registrations, routed, result)
    result.owners[customer_id] = decision.owner
    upcoming = _next_instant(registrations.values(), decision, now)
    if upcoming is not None and customer_id is not None:
        result.next_thresholds[customer_id] = upcoming
    if result.keep_registrations:
        result.registrations.update(registrations)
    return result


def _conflict_findings(
    customer_id: str | None,
    conflicts: Sequence[Conflict],
    decision: OwnerDecision,
    now: datetime,
    findings: list[Finding],
) -> None:
    for conflict in conflicts:
        reason = conflict.reason
        findings.append(Finding(
            reason.kind, customer_id, conflict.subject, f"conflict.{reason.kind}",
            conflict.evidence,
            {"parties": reason.parties, "subject_party": reason.subject,
             "holder": reason.holder, "basis": decision.basis, "reason": reason},
            now,
        ))


def _registration_findings(
    customer_id: str | None,
    registrations: Iterable[Registration],
    now: datetime,
    findings: list[Finding],
) -> None:
    for reg in registrations:
        details = {"holder": reg.holder, "state": reg.state, "expires_at": reg.expires_at}
        if reg.carried_out:
            findings.append(Finding(
                _DECISION_FINDING[reg.carried_out], customer_id, reg.opportunity,
                "registration.decision", (reg.opportunity,),
                {**details, "registered_by": reg.registered_by}, now,
            ))
        if reg.invalid_decision:
            findings.append(Finding(
                "registration_decision_invalid", customer_id, reg.opportunity,
                "registration.decision", (reg.opportunity,),
                {**details, "problem": reg.invalid_decision}, now,
            ))
        if reg.state == "expiring":
            findings.append(Finding(
                "registration_expiring", customer_id, reg.opportunity,
                "registration.warning_window", (reg.opportunity,), details, now,
            ))
        elif reg.state == "expired":
            rule = "registration.inactivity" if reg.lapsed_by_inactivity else "registration.term"
            findings.append(Finding(
                "registration_expired", customer_id, reg.opportunity, rule, (reg.opportunity,),
                details, now,
            ))


def _desired_values(
    customer_id: str | None,
    accounts: Sequence[AccountFact],
    opportunities: Sequence[OpportunityFact],
    decision: OwnerDecision,
    conflicts: Sequence[Conflict],
    registrations: Mapping[RecordKey, Registration],
    routed: Mapping[RecordKey, str],
    result: Evaluation,
) -> None:
    desired = result.desired
    owner = decision.owner
    by_record: dict[RecordKey, Reason] = {}
    by_party: dict[str | None, Reason] = {}
    for conflict in conflicts:  # most serious first, so setdefault keeps the first
        for key in (conflict.subject, *conflict.evidence):
            by_record.setdefault(key, conflict.reason)
        by_party.setdefault(conflict.reason.subject, conflict.reason)
        by_party.setdefault(conflict.reason.holder, conflict.reason)
    any_reason = conflicts[0].reason if conflicts else None

    # Records with equal values share one read-only mapping: most records of a customer
    # carry the same handful of values, and millions of small dicts would cost gigabytes.
    account_values: dict[int, Mapping[str, Any]] = {}
    for account in accounts:
        reason = by_record.get(account.key) if by_record else None
        if reason is None and conflicts:
            reason = any_reason if account.role == "internal" else by_party.get(
                account.distributor_id
            )
        values = account_values.get(id(reason))
        if values is None:
            values = account_values[id(reason)] = MappingProxyType({
                "channel_owner": owner, "conflict_flag": reason is not None,
                "conflict_reason": reason, "customer_id": customer_id,
            })
        desired[account.key] = values

    # without a reason, an opportunity's values carry nothing of its customer: share them
    # across customers; with one, the reason object is per customer, so share within it
    global_shared = result._shared
    local_shared: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for opp in opportunities:
        key = opp.key
        reason = by_record.get(key) if by_record else None
        reg = registrations.get(key) if registrations else None
        manager = routed.get(key) if routed else None
        state, expires_on, clear = (
            (reg.recorded_status, reg.recorded_expiry, reg.clear_decision) if reg is not None
            else (None, None, False)
        )
        signature: tuple[Any, ...]
        if reason is None:
            shared, signature = global_shared, (owner, state, expires_on, clear, manager)
        else:
            shared, signature = local_shared, (id(reason), state, expires_on, clear, manager)
        values = shared.get(signature)
        if values is None:
            fields: dict[str, Any] = {
                "channel_owner": owner, "conflict_flag": reason is not None,
                "conflict_reason": reason, "registration_status": state,
                "registration_expires_at": expires_on,
            }
            if clear:
                fields["registration_decision"] = None
            if manager is not None:
                fields["routed_to"] = manager
            values = shared[signature] = MappingProxyType(fields)
        desired[key] = values


def _next_instant(
    registrations: Iterable[Registration], decision: OwnerDecision, now: datetime
) -> datetime | None:
    upcoming = decision.direct_from if decision.basis == RELEASED_HOLD else None
    if upcoming is not None and upcoming <= now:
        upcoming = None
    for registration in registrations:
        for instant in thresholds(registration):
            if instant > now and (upcoming is None or instant < upcoming):
                upcoming = instant
    return upcoming


def due_customers(next_thresholds: Mapping[str, datetime], now: datetime) -> set[str]:
    """Customers whose next time threshold (from ``Evaluation.next_thresholds``, kept and
    merged by the caller across evaluations) has been reached: re-evaluate them."""
    return {customer for customer, instant in next_thresholds.items() if instant <= now}


def customers_crossing(
    snapshot: Snapshot, policy: Policy, since: datetime, now: datetime
) -> set[str]:
    """Customers where a time threshold (warning start, expiry by term or inactivity, end of
    a release hold) falls in ``(since, now]``: their state changed by time alone.

    A full scan that assesses every registration; a daemon keeps
    ``Evaluation.next_thresholds`` instead and asks :func:`due_customers`."""
    crossing: set[str] = set()
    for opp in snapshot.opportunities:
        if opp.customer_id is None or opp.customer_id in crossing:
            continue
        for instant in _thresholds_of(opp, policy, now):
            if since < instant <= now:
                crossing.add(opp.customer_id)
                break
    return crossing


def next_threshold(snapshot: Snapshot, policy: Policy, now: datetime) -> datetime | None:
    """The earliest time threshold after ``now`` (None: none), to schedule the next check."""
    earliest: datetime | None = None
    for opp in snapshot.opportunities:
        for instant in _thresholds_of(opp, policy, now):
            if instant > now and (earliest is None or instant < earliest):
                earliest = instant
    return earliest


def _thresholds_of(opp: OpportunityFact, policy: Policy, now: datetime) -> tuple[datetime, ...]:
    if not opp.registered_by or opp.deleted:
        return ()
    registration = assess(opp, policy, now)
    if registration is None:
        return ()
    if registration.state == "released":
        delay = policy.direct_after_release
        if delay is None or registration.expires_at is None:
            return ()
        return (registration.expires_at + delay,)
    return thresholds(registration)

