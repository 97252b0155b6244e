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
    """Every conflict on the customer, given its live opportunities and owner decision."""
    owner = decision.owner
    found: list[Conflict] = []
    open_opps = [o for o in opportunities if o.stage_category == "open"]

    def add(kind: str, opp_key: RecordKey, subject: str, holder: str | None) -> None:
        reason = Reason(kind, subject, holder, decision.since)
        found.append(Conflict(reason, opp_key, decision.evidence))

    if decision.basis == RELEASED_HOLD and decision.released is not None:
        for opp in open_opps:
            if opp.party == DIRECT:
                add(DIRECT_ON_RELEASED_CUSTOMER, opp.key, DIRECT, decision.released.holder)
        return found
    if owner == DIRECT and decision.basis == EXPLICIT:
        for reg in decision.ranked:
            add(REGISTRATION_ON_DIRECT_CUSTOMER, reg.opportunity, reg.holder, DIRECT)
        return found
    if owner is None or owner == DIRECT:
        return found
    keep_current = decision.basis == EXPLICIT and policy.mid_sale_switch == "keep_current"
    for opp in open_opps:
        registration = registrations.get(opp.key)
        if opp.party == DIRECT and (registration is None or not registration.valid):
            add(DIRECT_VS_CHANNEL, opp.key, DIRECT, owner)
        elif registration is not None and registration.valid:
            if registration.holder != owner and not keep_current:
                add(CHANNEL_VS_CHANNEL, opp.key, registration.holder, owner)
        elif opp.party not in (owner, DIRECT):
            add(UNREGISTERED_DEAL, opp.key, opp.party, owner)
    return found


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
