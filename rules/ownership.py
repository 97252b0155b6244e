"""Channel ownership of one end customer: one owner, from the strongest claim.

In order: an owner a channel manager set by hand on an internal account; else the holder
of the prevailing valid registration (``conflict_precedence`` decides between several);
else, after a release, nobody until ``direct_after_release`` has passed, then direct;
else direct when a direct opportunity is open; else nobody.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from config.canonical import DIRECT
from rules.model import AccountFact, OpportunityFact, Policy, RecordKey
from rules.registrations import Registration

EXPLICIT = "explicit"
REGISTRATION = "registration"
RELEASED_HOLD = "released_hold"  # released, direct may not own it yet
RELEASED = "released"  # released, and direct may now own it
DIRECT_ACTIVE = "direct_active"
NONE = "none"


@dataclass(frozen=True, slots=True)
class OwnerDecision:
    """Who owns the customer, on what basis, and the records that show it.

    ``ranked`` lists the valid registrations, the prevailing one first. ``released`` is
    the latest released registration (when the basis is a release). ``direct_from`` is
    when direct may own a released customer (None: never by itself)."""

    owner: str | None
    basis: str
    evidence: tuple[RecordKey, ...]
    since: date | None
    ranked: tuple[Registration, ...] = ()
    released: Registration | None = None
    direct_from: datetime | None = None
    disagreeing: tuple[RecordKey, ...] = ()  # internal accounts naming a different owner


def decide_owner(
    accounts: Sequence[AccountFact],
    opportunities: Sequence[OpportunityFact],
    registrations: Sequence[Registration],
    policy: Policy,
    now: datetime,
) -> OwnerDecision:
    """The owner of the customer these live records belong to."""
    ranked = (
        rank_registrations(registrations, accounts, opportunities, policy)
        if registrations else ()
    )
    explicit = sorted(
        (a for a in accounts if a.role == "internal" and a.channel_owner
         and not a.channel_owner_is_ours),
        key=lambda a: a.key,
    )
    if explicit:
        chosen = explicit[0]
        disagreeing = tuple(a.key for a in explicit[1:] if a.channel_owner != chosen.channel_owner)
        return OwnerDecision(
            chosen.channel_owner, EXPLICIT, (chosen.key,), None, ranked,
            disagreeing=disagreeing,
        )
    if ranked:
        winner = ranked[0]
        since = winner.registered_at.date() if winner.registered_at else None
        return OwnerDecision(winner.holder, REGISTRATION, (winner.opportunity,), since, ranked)
    released = [r for r in registrations if r.state == "released" and r.expires_at is not None]
    if released:
        latest = max(released, key=lambda r: (r.expires_at, r.opportunity))
        assert latest.expires_at is not None  # filtered above
        delay = policy.direct_after_release
        direct_from = None if delay is None else latest.expires_at + delay
        held = direct_from is None or now < direct_from
        return OwnerDecision(
            None if held else DIRECT,
            RELEASED_HOLD if held else RELEASED,
            (latest.opportunity,),
            latest.expires_at.date(),
            released=latest,
            direct_from=direct_from,
        )
    direct_open = sorted(
        o.key for o in opportunities if o.party == DIRECT and o.stage_category == "open"
    )
    if direct_open:
        return OwnerDecision(DIRECT, DIRECT_ACTIVE, (direct_open[0],), None)
    return OwnerDecision(None, NONE, (), None)


def rank_registrations(
    registrations: Sequence[Registration],
    accounts: Sequence[AccountFact],
    opportunities: Sequence[OpportunityFact],
    policy: Policy,
) -> tuple[Registration, ...]:
    """Valid registrations, the one that prevails under the policy first."""
    valid = [r for r in registrations if r.valid]
    if len(valid) < 2:
        return tuple(valid)

    def earliest(r: Registration) -> tuple[datetime | None, str, RecordKey]:
        return (r.registered_at, r.holder, r.opportunity)

    precedence = policy.conflict_precedence
    if precedence == "largest_amount":
        amounts: Mapping[RecordKey, Decimal] = {
            o.key: o.amount for o in opportunities if o.amount is not None
        }
        return tuple(sorted(
            valid, key=lambda r: (-amounts.get(r.opportunity, Decimal(0)), *earliest(r))
        ))
    if precedence == "channel_owner":
        incumbents = sorted(
            (a.key, a.channel_owner) for a in accounts if a.role == "internal" and a.channel_owner
        )
        incumbent = incumbents[0][1] if incumbents else None
        return tuple(sorted(valid, key=lambda r: (r.holder != incumbent, *earliest(r))))
    return tuple(sorted(valid, key=earliest))
