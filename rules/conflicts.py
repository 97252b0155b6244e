"""Channel conflicts on one end customer, and routing of direct deals to the channel manager.

Kinds (see ``rules.model``): a direct opportunity on a customer a distributor holds; a
distributor's valid registration that loses to the customer's holder; a distributor's
deal without a valid registration on a customer another distributor holds; a
registration on a customer a channel manager assigned to direct sales; and a direct
opportunity on a released customer before direct may own it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.canonical import DIRECT
from rules.model import (
    CHANNEL_VS_CHANNEL,
    DIRECT_ON_RELEASED_CUSTOMER,
    DIRECT_VS_CHANNEL,
    REGISTRATION_ON_DIRECT_CUSTOMER,
    UNREGISTERED_DEAL,
    OpportunityFact,
    Policy,
    Reason,
    RecordKey,
)
from rules.ownership import EXPLICIT, REGISTRATION, RELEASED_HOLD, OwnerDecision
from rules.registrations import Registration


@dataclass(frozen=True, slots=True)
class Conflict:
    """One conflict: the record in the wrong (``subject``) and what it collides with."""

    reason: Reason
    subject: RecordKey
    evidence: tuple[RecordKey, ...]

    @property
    def kind(self) -> str:
        return self.reason.kind


@dataclass(frozen=True, slots=True)
class Routing:
    """A direct opportunity that belongs with the channel manager of its connection."""

    opportunity: RecordKey
    channel_manager: str | None  # None: no channel manager configured for the connection
    evidence: tuple[RecordKey, ...]


def find_conflicts(
    opportunities: Sequence[OpportunityFact],
    registrations: Mapping[RecordKey, Registration],
    decision: OwnerDecision,
    policy: Policy,
) -> list[Conflict]:
    """Every conflict on the customer, given its live opportunities and owner decision.

    A conflict's evidence is what the owner decision rests on plus the holder's own open
    deals, so every record on both sides of a conflict is flagged in its own CRM, whatever
    the basis of ownership (a hand-set owner included)."""
    owner = decision.owner
    found: list[Conflict] = []
    open_opps = [o for o in opportunities if o.stage_category == "open"]

    if decision.basis == RELEASED_HOLD and decision.released is not None:
        for opp in open_opps:
            if opp.party == DIRECT:
                reason = Reason(DIRECT_ON_RELEASED_CUSTOMER, DIRECT, decision.released.holder,
                                decision.since)
                found.append(Conflict(reason, opp.key, decision.evidence))
        return found
    if owner is None or (owner == DIRECT and decision.basis != EXPLICIT):
        return found
    held = holder_deals(owner, open_opps, registrations)
    evidence = decision.evidence + tuple(k for k in held if k not in decision.evidence)

    def add(kind: str, opp_key: RecordKey, subject: str, holder: str | None) -> None:
        reason = Reason(kind, subject, holder, decision.since)
        found.append(Conflict(reason, opp_key, evidence))

    if owner == DIRECT:  # a channel manager assigned the customer to direct sales
        for reg in decision.ranked:
            add(REGISTRATION_ON_DIRECT_CUSTOMER, reg.opportunity, reg.holder, DIRECT)
        return found
    kept = kept_by_mid_sale_switch(decision, policy)
    for opp in open_opps:
        registration = registrations.get(opp.key)
        valid = registration is not None and registration.valid
        if opp.party == DIRECT and not valid:
            add(DIRECT_VS_CHANNEL, opp.key, DIRECT, owner)
        elif registration is not None and valid:
            if registration.holder not in (owner, kept):
                add(CHANNEL_VS_CHANNEL, opp.key, registration.holder, owner)
        elif opp.party not in (owner, DIRECT):
            add(UNREGISTERED_DEAL, opp.key, opp.party, owner)
    return found


def holder_deals(
    holder: str,
    open_opps: Sequence[OpportunityFact],
    registrations: Mapping[RecordKey, Registration],
) -> tuple[RecordKey, ...]:
    """The holder's open deals on the customer: those carrying a valid registration it
    holds, and those it pursues without one (direct sales' unregistered deals included)."""
    keys = []
    for opp in open_opps:
        registration = registrations.get(opp.key)
        party = registration.holder if registration is not None and registration.valid \
            else opp.party
        if party == holder:
            keys.append(opp.key)
    return tuple(sorted(keys))


def kept_by_mid_sale_switch(decision: OwnerDecision, policy: Policy) -> str | None:
    """The distributor whose registrations ``keep_current`` lets run unflagged, if any.

    Only a mid-sale switch protects anyone: a channel manager named an owner other than
    the holder of the registration that prevails under the policy, the claim the customer
    was held by before the switch. When the named owner holds that registration itself,
    nothing was switched and the other registrations lose to it as usual. (The engine keeps
    no record of when the owner was set, so the prevailing registration stands for the
    claim the switch interrupted.)"""
    if decision.basis != EXPLICIT or policy.mid_sale_switch != "keep_current":
        return None
    if not decision.ranked:
        return None
    current = decision.ranked[0].holder
    return None if current == decision.owner else current


def find_routings(
    opportunities: Sequence[OpportunityFact],
    registrations: Mapping[RecordKey, Registration],
    decision: OwnerDecision,
    policy: Policy,
) -> list[Routing]:
    """Open direct deals that go to the channel manager instead of a direct rep.

    A customer a distributor holds routes direct deals created after the claim began (all
    of them when a channel manager named the owner); a released customer that direct may
    not own yet routes every open direct deal."""
    routable_owner = decision.owner not in (None, DIRECT) and decision.basis in (
        EXPLICIT, REGISTRATION
    )
    if not routable_owner and decision.basis != RELEASED_HOLD:
        return []
    claim_start = decision.ranked[0].registered_at if decision.basis == REGISTRATION else None
    routed: list[Routing] = []
    for opp in opportunities:
        if opp.party != DIRECT or opp.role != "internal" or opp.stage_category != "open":
            continue
        registration = registrations.get(opp.key)
        if registration is not None and registration.valid:
            continue
        if claim_start is not None and (opp.created_at is None or opp.created_at < claim_start):
            continue
        manager = policy.channel_managers.get(opp.key.connection)
        routed.append(Routing(opp.key, manager, decision.evidence))
    return routed
