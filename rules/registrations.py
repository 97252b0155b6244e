"""Deal-registration lifecycle: the state of one registration at ``now``, and its thresholds.

States: pending (claimed, not yet dated), active, expiring (inside the warning window),
expired (term reached, or no activity for the inactivity limit), extended, released, won,
lost. A channel manager's decision (``registration_decision``: extend | reassign |
release) is carried out here and the decision field cleared. Because the engine keeps no
state, a carried-out decision persists through the fields we write back, and carrying it
out means exactly this: assess the record as it will read once those fields are written.
So the cycle after ours, reading our own write back, reaches the same verdict.

- extend: ``registration_expires_at`` = the extension's term end, the date of (decision
  time + term); the inactivity limit counts from the later of the decision and the last
  activity, so the status may say expiring or expired before that date. A later read
  whose expiry date lies after the plain term, is the date we wrote (the sync layer checks
  its ledger: ``registration_expiry_is_ours``) and comes with a status we write for a
  registration (extended, expiring, expired, won, lost), is an extension in force. A date
  a person typed in, or an ``active`` status with a later date and no reassignment, is a
  hand edit, not trusted: nobody extends a registration but through the decision field.
- reassign: ``reassign_to`` holds the registration from the day of the decision, for its
  own term. The claim is no longer the original registrant's, so its record shows status
  ``released`` dated on the reassignment day (when the new term starts); ``reassign_to``
  stays set, and a ``released`` status with a ``reassign_to`` naming another distributor
  is how later cycles recognise it (whoever set it: it must read the same before and
  after we write its date). The new holder's own state (active, expiring, expired) shows
  in findings and ownership, not on the record. A later extend or reassign on it
  restarts the term from its decision day; a release while ``reassign_to`` names another
  distributor is refused (it would read back as a reassignment): clear ``reassign_to``
  in the same edit. A deal that closes shows won or lost like any other.
- release: status ``released`` (terminal until the deal closes; releasing it again only
  moves the date); ``registration_expires_at`` = the release date, which is when
  ``direct_after_release`` starts counting.

The decision time is the record's ``modified_at`` (the manager's edit), capped at ``now``;
it is read only while the decision is set, so our own write bumping ``modified_at`` never
moves it. Won and lost close every registration, whatever else happened.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time

from config.canonical import DECISIONS
from rules.model import OpportunityFact, Policy, RecordKey

VALID_STATES = frozenset({"active", "expiring", "extended"})
# read statuses under which a later expiry date is one we wrote for a carried-out decision:
# every state an extension in force can be in (it lapses and closes like any registration);
# an 'active' status with a later date is a hand edit, not trusted
_PERSISTED_EXTENDED = frozenset({"extended", "expiring", "expired", "won", "lost"})
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
    # an extension or reassignment in force: its term end, the date the CRM must keep
    # showing (inactivity may end it sooner; the status says so)
    term_end: datetime | None = None
    # reassigned away from ``registered_by`` on this day: the record shows it released
    reassigned_on: date | None = None

    @property
    def valid(self) -> bool:
        return self.state in VALID_STATES

    @property
    def recorded_status(self) -> str:
        """The status to write back: ``released`` on a record whose registration was
        reassigned to another distributor (its registrant's claim ended), else the state."""
        return "released" if self.reassigned_on is not None else self.state

    @property
    def expires_on(self) -> date | None:
        return self.expires_at.date() if self.expires_at is not None else None

    @property
    def recorded_expiry(self) -> date | None:
        """The expiry date to write back: the reassignment day on a reassigned record, the
        extension's term end while one is in force (both are how the next cycle recognises
        them), else the date it ends."""
        if self.reassigned_on is not None:
            return self.reassigned_on
        if self.term_end is not None:
            return self.term_end.date()
        return self.expires_on


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
    read_expiry = opp.registration_expires_at
    names_other = bool(opp.reassign_to) and opp.reassign_to != registered_by
    # a released record naming another distributor carries a reassignment; it must read
    # the same before and after we write its date, so a hand-set one counts too
    reassigned = closed is None and names_other and opp.registration_status == "released"
    decision = opp.registration_decision
    released = opp.registration_status == "released" and not reassigned
    if decision and closed is None and (not released or decision == "release"):
        # a release stays terminal; releasing it again only re-dates it
        return _carry_out(opp, policy, now, reassigned)

    holder = registered_by
    extension_start: datetime | None = None
    term_expiry = base_expiry
    reassigned_on: date | None = None
    if reassigned and opp.reassign_to:
        # carried out earlier: the named distributor holds it from the reassignment day
        # (without a date, the last edit capped at the term: the date we then write)
        reassigned_on = read_expiry or min((opp.modified_at or now).date(), base_expiry.date())
        holder = opp.reassign_to
        terms = policy.terms_for(holder)
        extension_start = midnight(reassigned_on)
        term_expiry = extension_start + terms.registration_term
    elif (
        opp.registration_status in _PERSISTED_EXTENDED
        and read_expiry is not None
        and opp.registration_expiry_is_ours
        and midnight(read_expiry) > base_expiry
    ):
        # an extension carried out earlier is in force
        term_expiry = midnight(read_expiry)
        extension_start = term_expiry - terms.registration_term

    if released and closed is None:
        # the date we wrote when carrying out the release; without one (a status set by
        # hand) the last edit, capped at the term; either way the value we write back.
        # A released deal that closes is dated like any closed one: once we write won or
        # lost, the release is no longer visible to later cycles.
        if read_expiry is not None:
            ends = midnight(read_expiry)
        else:
            ends = min(midnight((opp.modified_at or now).date()), term_expiry)
        return Registration(
            opp.key, opp.customer_id, holder, registered_by, "released", registered_at, ends,
            None,
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
    elif extension_start is not None and not reassigned:
        state = "extended"
    else:
        state = "active"
    return Registration(
        opp.key, opp.customer_id, holder, registered_by, state, registered_at, expires_at,
        warning_at, lapsed_by_inactivity=expires_at < term_expiry,
        term_end=term_expiry if extension_start is not None and not reassigned else None,
        reassigned_on=reassigned_on,
    )


def _carry_out(
    opp: OpportunityFact, policy: Policy, now: datetime, reassigned: bool
) -> Registration:
    """Carry out the decision: assess the record as it reads once our write lands.
    ``reassigned``: the record already carries a reassignment in force."""
    registered_by = opp.registered_by or ""
    decided_at = min(opp.modified_at or now, now)
    decision = opp.registration_decision or ""
    if decision not in DECISIONS:
        return _unchanged(opp, policy, now, f"unknown decision {decision!r}")
    names_other = bool(opp.reassign_to) and opp.reassign_to != registered_by
    if decision == "release":
        if names_other:
            return _unchanged(opp, policy, now, "release while reassign_to names "
                              f"{opp.reassign_to!r}: clear reassign_to first")
        written = replace(
            opp, registration_decision=None, registration_status="released",
            registration_expires_at=decided_at.date(), registration_expiry_is_ours=True,
        )
    elif decision == "reassign" or (decision == "extend" and reassigned):
        if not names_other:
            return _unchanged(opp, policy, now, "reassign needs reassign_to naming another "
                              "distributor")
        # the new holder's term starts on the decision day, the date later cycles read back
        written = replace(
            opp, registration_decision=None, registration_status="released",
            registration_expires_at=decided_at.date(), registration_expiry_is_ours=True,
        )
    else:
        # a date, because that is what later cycles read back
        term_end = (decided_at + policy.terms_for(registered_by).registration_term).date()
        written = replace(
            opp, registration_decision=None, registration_expires_at=term_end,
            registration_expiry_is_ours=True, registration_status="extended",
        )
    found = assess(written, policy, now)
    assert found is not None  # same registration, decision carried out
    return replace(found, carried_out=decision, clear_decision=True)


def _unchanged(opp: OpportunityFact, policy: Policy, now: datetime, why: str) -> Registration:
    """The registration as if no decision were set, marked with why it was not carried out."""
    plain = replace(opp, registration_decision=None)
    found = assess(plain, policy, now)
    assert found is not None  # same registration, decision removed
    return replace(found, invalid_decision=why)


def thresholds(registration: Registration) -> tuple[datetime, ...]:
    """Instants at which this registration's state changes by time alone."""
    if registration.state in _TIMELESS or registration.expires_at is None:
        return ()
    if registration.warning_at is None:
        return (registration.expires_at,)
    return (registration.warning_at, registration.expires_at)
