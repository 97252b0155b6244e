"""The rules' desired values are a fixed point: once the CRMs show what we wrote, no write.

After a cycle, every CRM shows the values the rules desired (status, expiry date, cleared
decision, channel owner, unless a person owns that owner field), and every record we
wrote has a fresh modified timestamp. Evaluating that picture again, now or a few
seconds later, must desire exactly the same values: otherwise our own write echoing back
would cause another write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config.canonical import REGISTRATION_STATES
from rules.engine import Evaluation, evaluate
from rules.model import (
    AccountFact,
    OpportunityFact,
    Policy,
    RecordKey,
    Snapshot,
    TermOverride,
)
from rules.registrations import assess
from sync.visibility import ANOTHER_PARTY

DAY = timedelta(days=1)
NOW = datetime(2026, 11, 26, 14, 30, 7, tzinfo=UTC)
DISTRIBUTORS = ("D1", "D2", "D3")
PORTAL = "D4"  # registers through the manufacturer's partner portal (internal CRM)
INTERNAL = ("sf-main", "d365")
CUSTOMERS = ("C1", "C2", "C3")
DECISIONS = (None, None, "extend", "reassign", "release", "postpone")


def home(distributor: str) -> str:
    return f"crm-{distributor}"


# -- generated snapshots ----------------------------------------------------------------------

def offsets(max_days: int) -> st.SearchStrategy[timedelta]:
    """A time before NOW: whole days (date-only vendor fields) or to the second."""
    return st.one_of(
        st.integers(0, max_days).map(lambda d: timedelta(days=d)),
        st.integers(0, max_days * 86_400).map(lambda s: timedelta(seconds=s)),
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    term = draw(st.integers(20, 180)) * DAY
    overrides = {}
    for distributor in draw(st.lists(st.sampled_from((*DISTRIBUTORS, PORTAL)), max_size=2,
                                     unique=True)):
        overrides[distributor] = TermOverride(
            registration_term=draw(st.none() | st.integers(15, 200).map(lambda d: d * DAY)),
            inactivity_limit=draw(st.none() | st.integers(5, 90).map(lambda d: d * DAY)),
        )
    return Policy(
        registration_term=term,
        inactivity_limit=draw(st.integers(5, 120)) * DAY,
        warning_window=draw(st.integers(0, 30)) * DAY,
        conflict_precedence=draw(
            st.sampled_from(("earliest_registration", "channel_owner", "largest_amount"))
        ),
        direct_after_release=draw(st.sampled_from((None, timedelta(0), 30 * DAY))),
        mid_sale_switch=draw(st.sampled_from(("keep_current", "new_owner"))),
        channel_managers={"sf-main": "sf-u-cm"} if draw(st.booleans()) else {},
        distributors=overrides,
    )


@st.composite
def registration_fields(draw: st.DrawFn, registrant: str) -> dict[str, Any]:
    """The registration columns of one deal as a CRM might show them."""
    registered_at = NOW - draw(offsets(260)) if draw(st.integers(0, 9)) else None
    status = draw(st.none() | st.sampled_from(REGISTRATION_STATES))
    read_expiry: date | None = None
    if draw(st.booleans()):
        anchor = registered_at or NOW
        read_expiry = (anchor + draw(st.integers(-30, 300)) * DAY).date()
    decision = draw(st.sampled_from(DECISIONS))
    reassign_to = draw(st.none() | st.sampled_from((*DISTRIBUTORS, PORTAL)))
    return {
        "registered_by": registrant if (registered_at is not None or draw(st.booleans()))
        else None,
        "registered_at": registered_at,
        "registration_status": status,
        "registration_expires_at": read_expiry,
        # a date we wrote, or one a person typed in (the ledger tells them apart)
        "registration_expiry_is_ours": draw(st.booleans()),
        "registration_decision": decision,
        "reassign_to": reassign_to,
    }


@st.composite
def opportunities(draw: st.DrawFn, customer: str, index: int) -> OpportunityFact:
    kind = draw(st.sampled_from(("direct", "portal", "distributor", "distributor")))
    if kind == "distributor":
        distributor = draw(st.sampled_from(DISTRIBUTORS))
        connection, role, party = home(distributor), "distributor", distributor
        fields = draw(registration_fields(distributor))
        if fields["registered_at"] is None:
            fields["registered_by"] = None  # as build_snapshot reads a distributor's CRM
        dist_id: str | None = distributor
    else:
        connection, role, dist_id = draw(st.sampled_from(INTERNAL)), "internal", None
        fields = draw(registration_fields(PORTAL)) if kind == "portal" else {}
        party = fields.get("registered_by") or "direct"
    created = NOW - draw(offsets(300))
    last_activity = (NOW - draw(offsets(200))) if draw(st.booleans()) else None
    modified = draw(st.sampled_from(("old", "recent", "future")))
    modified_at = {
        "old": created + (NOW - created) / 2,
        "recent": NOW - draw(offsets(3)),
        "future": NOW + timedelta(seconds=draw(st.integers(1, 600))),  # a skewed vendor clock
    }[modified]
    return OpportunityFact(
        key=RecordKey(connection, "opportunity", f"{customer}-o{index}"),
        customer_id=customer if draw(st.integers(0, 9)) else None,
        role=role,  # type: ignore[arg-type]  # drawn from the two roles
        distributor_id=dist_id,
        account_key=RecordKey(connection, "account", f"{customer}-{connection}"),
        party=party,
        amount=draw(st.none() | st.decimals(1, 10**6, places=2)),
        currency="EUR",
        stage_category=draw(st.sampled_from(("open", "open", "open", "won", "lost"))),
        created_at=created,
        modified_at=modified_at,
        last_activity_at=last_activity,
        deleted=draw(st.integers(0, 19)) == 0,
        **fields,
    )


@st.composite
def accounts(draw: st.DrawFn, customer: str) -> list[AccountFact]:
    connections = draw(st.lists(st.sampled_from(INTERNAL + tuple(map(home, DISTRIBUTORS))),
                                max_size=4, unique=True))
    out = []
    for connection in connections:
        internal = connection in INTERNAL
        owner = draw(st.none() | st.sampled_from(("direct", *DISTRIBUTORS, PORTAL)))
        out.append(AccountFact(
            key=RecordKey(connection, "account", f"{customer}-{connection}"),
            customer_id=customer,
            role="internal" if internal else "distributor",
            distributor_id=None if internal else connection.removeprefix("crm-"),
            channel_owner=owner,
            # a person's choice, or a value we wrote earlier
            channel_owner_is_ours=owner is not None and draw(st.booleans()),
        ))
    return out


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    account_facts: list[AccountFact] = []
    opp_facts: list[OpportunityFact] = []
    for customer in CUSTOMERS[: draw(st.integers(1, len(CUSTOMERS)))]:
        account_facts += draw(accounts(customer))
        opp_facts += [draw(opportunities(customer, i)) for i in range(draw(st.integers(0, 5)))]
    return Snapshot(accounts=account_facts, opportunities=opp_facts)


# -- what the CRMs show after our writes -------------------------------------------------------

def shown_owner(owner: str | None, account: AccountFact) -> str | None:
    """The owner value written to this account's CRM (partners see no other party)."""
    if account.role != "distributor" or owner is None:
        return owner
    return owner if owner == account.distributor_id else ANOTHER_PARTY


def after_writes(
    snapshot: Snapshot, evaluation: Evaluation, written_at: datetime, *, bump_all: bool
) -> tuple[Snapshot, int]:
    """The snapshot as read once the planner's writes landed, and how many fields changed.

    The owner field is human-wins: a value a person set is left alone."""
    changes = 0
    accounts_after = []
    for account in snapshot.accounts:
        values = evaluation.desired.get(account.key)
        if values is None:
            accounts_after.append(account)
            continue
        wanted = shown_owner(values["channel_owner"], account)
        held = account.channel_owner is not None and not account.channel_owner_is_ours
        if wanted != account.channel_owner and not held:
            changes += 1
            account = replace(account, channel_owner=wanted,
                              channel_owner_is_ours=wanted is not None)
        accounts_after.append(account)
    opps_after = []
    for opp in snapshot.opportunities:
        values = evaluation.desired.get(opp.key)
        if values is None:
            opps_after.append(opp)
            continue
        update: dict[str, Any] = {}
        if values["registration_status"] != opp.registration_status:
            update["registration_status"] = values["registration_status"]
        if values["registration_expires_at"] != opp.registration_expires_at:
            update["registration_expires_at"] = values["registration_expires_at"]
            update["registration_expiry_is_ours"] = True  # the ledger now holds it
        if "registration_decision" in values and opp.registration_decision is not None:
            update["registration_decision"] = None
        changes += len(update) - ("registration_expiry_is_ours" in update)
        if update or bump_all:  # a flag or reason write bumps the record too
            update["modified_at"] = written_at
        opps_after.append(replace(opp, **update))
    return Snapshot(accounts=accounts_after, opportunities=opps_after), changes


def comparable(desired: Mapping[RecordKey, Mapping[str, Any]]) -> dict[RecordKey, dict[str, Any]]:
    """Desired values without the one-off 'clear the decision' marker."""
    return {
        key: {k: v for k, v in values.items() if k != "registration_decision"}
        for key, values in desired.items()
    }


def no_threshold_until(evaluation: Evaluation, until: datetime) -> bool:
    return all(instant > until for instant in evaluation.next_thresholds.values())


# -- the property ------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snapshot=snapshots(),
    policy=policies(),
    write_delay=st.integers(0, 5),
    bump_all=st.booleans(),
)
def test_evaluating_what_we_wrote_desires_the_same_values(
    snapshot: Snapshot, policy: Policy, write_delay: int, bump_all: bool
) -> None:
    first = evaluate(snapshot, policy, NOW)
    written_at = NOW + timedelta(seconds=write_delay)
    echoed, _ = after_writes(snapshot, first, written_at, bump_all=bump_all)

    for later in (NOW, NOW + timedelta(seconds=write_delay + 3)):
        if later > NOW and not no_threshold_until(first, later):
            continue  # time alone changes a state in between: a real change, not an echo
        second = evaluate(echoed, policy, later)
        assert comparable(second.desired) == comparable(first.desired)
        assert second.owners == first.owners
        # nothing left to clear, and nothing left to write
        assert not any("registration_decision" in v for v in second.desired.values())
        again, changes = after_writes(echoed, second, later, bump_all=False)
        assert changes == 0, "the second evaluation would write again"
        assert again == echoed


# -- the cases the sandboxes showed, by hand ----------------------------------------------------

POLICY = Policy(registration_term=90 * DAY, inactivity_limit=30 * DAY, warning_window=14 * DAY)


def deal(**fields: Any) -> OpportunityFact:
    fields.setdefault("registered_by", "D1")
    return OpportunityFact(
        key=RecordKey(home("D1"), "opportunity", "o1"), customer_id="C1", role="distributor",
        distributor_id="D1", account_key=RecordKey(home("D1"), "account", "a1"), party="D1",
        **fields,
    )


def round_trip(opp: OpportunityFact, now: datetime = NOW) -> tuple[Any, Any]:
    """(registration as carried out, registration as read back after our write)."""
    first = assess(opp, POLICY, now)
    assert first is not None
    read_back = replace(
        opp, registration_status=first.recorded_status,
        registration_expires_at=first.recorded_expiry, registration_expiry_is_ours=True,
        registration_decision=None, modified_at=now,
    )
    second = assess(read_back, POLICY, now)
    assert second is not None
    return first, second


def same_verdict(first: Any, second: Any) -> None:
    assert (second.state, second.holder, second.recorded_expiry, second.expires_at) == (
        first.state, first.holder, first.recorded_expiry, first.expires_at)


def test_an_extension_decided_long_ago_lapses_by_inactivity_and_stays_lapsed() -> None:
    # decided when the deal was last touched, 42 days ago: the extension's term runs to
    # decision + 90 days, but 30 days without activity since the decision ended it
    decided = NOW - 42 * DAY
    opp = deal(registered_at=NOW - 70 * DAY, last_activity_at=decided, modified_at=decided,
               registration_status="expired", registration_decision="extend")
    first, second = round_trip(opp)
    assert (first.state, first.carried_out, first.clear_decision) == ("expired", "extend", True)
    assert first.recorded_expiry == (decided + 90 * DAY).date()
    assert first.lapsed_by_inactivity and first.expires_at == decided + 30 * DAY
    same_verdict(first, second)
    assert not second.clear_decision


def test_an_extension_with_recent_activity_keeps_its_term_end() -> None:
    opp = deal(registered_at=NOW - 100 * DAY, last_activity_at=NOW - 2 * DAY,
               modified_at=NOW - DAY, registration_status="expired",
               registration_decision="extend")
    first, second = round_trip(opp)
    assert first.state == "extended"
    assert first.recorded_expiry == (NOW - DAY + 90 * DAY).date()
    same_verdict(first, second)


def test_a_reassignment_keeps_its_new_holder_after_the_echo() -> None:
    opp = deal(registered_at=NOW - 40 * DAY, last_activity_at=NOW - 35 * DAY,
               modified_at=NOW - 3 * DAY, registration_status="expired",
               registration_decision="reassign", reassign_to="D2")
    first, second = round_trip(opp)
    assert (first.holder, first.state, first.recorded_status) == ("D2", "active", "released")
    assert first.recorded_expiry == (NOW - 3 * DAY).date()  # the reassignment day
    same_verdict(first, second)


def test_a_release_after_the_term_keeps_its_release_date() -> None:
    released_on = NOW - 5 * DAY
    opp = deal(registered_at=NOW - 120 * DAY, last_activity_at=NOW - 20 * DAY,
               modified_at=released_on, registration_status="expired",
               registration_decision="release")
    first, second = round_trip(opp)
    assert (first.state, first.recorded_expiry) == ("released", released_on.date())
    same_verdict(first, second)


@example(stage="won")
@example(stage="lost")
@given(stage=st.sampled_from(("won", "lost")))
def test_an_extended_deal_that_closes_keeps_its_dates(stage: str) -> None:
    opp = deal(registered_at=NOW - 100 * DAY, last_activity_at=NOW - 2 * DAY,
               registration_status="extended",
               registration_expires_at=(NOW + 60 * DAY).date(), stage_category=stage)
    first, second = round_trip(opp)
    assert (first.state, first.recorded_expiry) == (stage, (NOW + 60 * DAY).date())
    same_verdict(first, second)


def test_a_later_expiry_date_a_person_typed_in_is_no_extension() -> None:
    """A distributor cannot extend its own registration by editing the date in its CRM."""
    typed = deal(registered_at=NOW - 100 * DAY, last_activity_at=NOW - 2 * DAY,
                 registration_status="expired", registration_expires_at=(NOW + 60 * DAY).date(),
                 registration_expiry_is_ours=False)
    reg = assess(typed, POLICY, NOW)
    assert reg is not None
    assert (reg.state, reg.recorded_expiry) == ("expired", (NOW - 10 * DAY).date())
    ours = assess(replace(typed, registration_expiry_is_ours=True), POLICY, NOW)
    assert ours is not None and ours.state == "extended"
