"""Deal-registration lifecycle: the state of one registration at ``now``, and its thresholds.

States: pending (claimed, not yet dated), active, expiring (inside the warning window),
expired (term reached, or no activity for the inactivity limit), extended, released, won,
lost. A channel manager's decision (``registration_decision``: extend | reassign |
release) is carried out here and the decision field cleared. Because the engine keeps no
state, a carried-out decision persists through the fields we write back:

- extend: ``registration_expires_at`` = date of (decision time + term), status
  ``extended``. A later read with status extended/expiring and an expiry date after the
  plain term is an extension in force.
- reassign: as extend, for the term of ``reassign_to``, who then holds the registration
  (``reassign_to`` stays set, which is how later cycles know the holder).
- release: status ``released`` (terminal until the deal closes); ``registration_expires_at``
  = the release date, which is when ``direct_after_release`` starts counting.

The decision time is the record's ``modified_at`` (the manager's edit), capped at ``now``.
Won and lost close every registration, whatever else happened.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time

from config.canonical import DECISIONS
from rules.model import OpportunityFact, Policy, RecordKey

VALID_STATES = frozenset({"active", "expiring", "extended"})
# read statuses under which a later expiry date is one we wrote for a carried-out decision;
# an 'active' status with a later date and no reassignment is a hand edit, not trusted
_PERSISTED_EXTENDED = frozenset({"extended", "expiring"})
_PERSISTED_REASSIGNED = frozenset({"active", "expiring", "extended"})
_TIMELESS = frozenset({"pending", "released", "won", "lost"})  # time alone changes nothing


@dataclass(frozen=True, slots=True)
class Registration:
    """One registration as the policy sees it at ``now``."""

    opportunity: RecordKey
    customer_id: str | None
    holder: str
    registered_by: str
    state: str
    registered_at: datetime | None
    expires_at: datetime | None  # when it ends (or ended); None while pending
    warning_at: datetime | None  # expires_at - warning window, for open registrations
    carried_out: str | None = None  # decision carried out in this evaluation
    clear_decision: bool = False
    invalid_decision: str | None = None  # why a decision was not carried out
    lapsed_by_inactivity: bool = False  # expiry set by the inactivity limit, not the term

    @property
    def valid(self) -> bool:
        return self.state in VALID_STATES

    @property
    def expires_on(self) -> date | None:
        return self.expires_at.date() if self.expires_at is not None else None


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def assess(opp: OpportunityFact, policy: Policy, now: datetime) -> Registration | None:
    """The registration carried by ``opp`` at ``now``, or None when it has none."""
    registered_by = opp.registered_by
    if not registered_by or opp.deleted:
        return None
    registered_at = opp.registered_at
    closed = opp.stage_category if opp.stage_category in ("won", "lost") else None
    if registered_at is None:
        return Registration(
            opp.key, opp.customer_id, registered_by, registered_by, closed or "pending",
            None, None, None,
        )
    terms = policy.terms_for(registered_by)
    base_expiry = registered_at + terms.registration_term
    decision = opp.registration_decision
    if decision and closed is None and opp.registration_status != "released":
        return _carry_out(opp, policy, now, base_expiry)

    holder = registered_by
    extension_start: datetime | None = None
    read_expiry = opp.registration_expires_at
    reassigned = bool(opp.reassign_to) and opp.reassign_to != registered_by
    trusted = _PERSISTED_REASSIGNED if reassigned else _PERSISTED_EXTENDED
    if (
        opp.registration_status in trusted
        and read_expiry is not None
        and midnight(read_expiry) > base_expiry
    ):
        # a decision carried out earlier (extend or reassign) is in force
        if reassigned and opp.reassign_to:
            holder = opp.reassign_to
        terms = policy.terms_for(holder)
        term_expiry = midnight(read_expiry)
        extension_start = term_expiry - terms.registration_term
    else:
        term_expiry = base_expiry

    if opp.registration_status == "released":
        released_on = read_expiry or (opp.modified_at or now).date()
        ends = min(midnight(released_on), term_expiry)
        return Registration(
            opp.key, opp.customer_id, holder, registered_by, closed or "released",
            registered_at, ends, None,
        )

    activity = registered_at
    last_activity = opp.last_activity_at
    if last_activity is not None and last_activity > activity:
        activity = last_activity
    if extension_start is not None and extension_start > activity:
        activity = extension_start
    expires_at = min(term_expiry, activity + terms.inactivity_limit)
    warning_at = expires_at - terms.warning_window
    state: str
    if closed is not None:
        state = closed
    elif now >= expires_at:
        state = "expired"
    elif now >= warning_at:
        state = "expiring"
    elif extension_start is not None and holder == registered_by:
        state = "extended"
    else:
        state = "active"
    return Registration(
        opp.key, opp.customer_id, holder, registered_by, state, registered_at, expires_at,
        warning_at, lapsed_by_inactivity=expires_at < term_expiry,
    )


def _carry_out(
    opp: OpportunityFact, policy: Policy, now: datetime, base_expiry: datetime
) -> Registration:
    registered_by = opp.registered_by or ""
    decided_at = min(opp.modified_at or now, now)
    decision = opp.registration_decision or ""
    holder = registered_by
    if decision not in DECISIONS:
        return _unchanged(opp, policy, now, f"unknown decision {decision!r}")
    if decision == "release":
        released = midnight(decided_at.date())
        return Registration(
            opp.key, opp.customer_id, holder, registered_by, "released", opp.registered_at,
            released, None, carried_out="release", clear_decision=True,
        )
    if decision == "reassign":
        if not opp.reassign_to or opp.reassign_to == registered_by:
            return _unchanged(opp, policy, now, "reassign needs reassign_to naming another "
                              "distributor")
        holder = opp.reassign_to
    terms = policy.terms_for(holder)
    # truncated to the date so later cycles, which read the date back, agree exactly
    expires_at = midnight((decided_at + terms.registration_term).date())
    warning_at = expires_at - terms.warning_window
    if now >= expires_at:
        state = "expired"
    elif now >= warning_at:
        state = "expiring"
    else:
        state = "extended" if decision == "extend" else "active"
    return Registration(
        opp.key, opp.customer_id, holder, registered_by, state, opp.registered_at, expires_at,
        warning_at, carried_out=decision, clear_decision=True,
    )


def _unchanged(opp: OpportunityFact, policy: Policy, now: datetime, why: str) -> Registration:
    """The registration as if no decision were set, marked with why it was not carried out."""
    plain = replace(opp, registration_decision=None)
    found = assess(plain, policy, now)
    assert found is not None  # same registration, decision removed
    return Registration(
        found.opportunity, found.customer_id, found.holder, found.registered_by, found.state,
        found.registered_at, found.expires_at, found.warning_at, invalid_decision=why,
        lapsed_by_inactivity=found.lapsed_by_inactivity,
    )


def thresholds(registration: Registration) -> tuple[datetime, ...]:
    """Instants at which this registration's state changes by time alone."""
    if registration.state in _TIMELESS or registration.expires_at is None:
        return ()
    if registration.warning_at is None:
        return (registration.expires_at,)
    return (registration.warning_at, registration.expires_at)
