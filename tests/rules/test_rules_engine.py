"""Ownership, conflicts, routing and desired values on hand-built snapshots."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from rules.engine import customers_crossing, due_customers, evaluate, next_threshold
from rules.model import (
    CONFLICT_KINDS,
    PARTNER_TEXT_OTHER,
    PARTNER_TEXT_YOURS,
    Finding,
    Policy,
    Reason,
    RecordKey,
)
from tests.rules.test_rules_fixtures import (
    DAY,
    INTERNAL,
    NOW,
    account,
    akey,
    day,
    direct_opp,
    okey,
    partner_opp,
    snapshot,
)

POLICY = Policy(
    registration_term=90 * DAY, inactivity_limit=365 * DAY, warning_window=14 * DAY,
    channel_managers={INTERNAL: "cm-anna"},
)
REGISTERED_10_DAYS = day("2026-05-22")


def conflict(
    kind: str, subject: RecordKey, evidence: tuple[RecordKey, ...], subject_party: str,
    holder: str, basis: str, since: date | None,
) -> Finding:
    reason = Reason(kind, subject_party, holder, since)
    return Finding(
        kind, "C1", subject, f"conflict.{kind}", evidence,
        {"parties": reason.parties, "subject_party": subject_party, "holder": holder,
         "basis": basis, "reason": reason},
        NOW,
    )


def test_direct_opportunity_on_a_registered_customer_is_a_conflict_and_routed() -> None:
    snap = snapshot(
        account(INTERNAL, "acc-C1"), account("D1", "acc-C1", distributor="D1"),
        partner_opp("D1", "o1", registered_days_ago=10),
        direct_opp("d0", created_at=NOW - 20 * DAY),  # there before the claim: not routed
        direct_opp("d1", created_at=NOW - 5 * DAY),
    )
    result = evaluate(snap, POLICY, NOW)
    reason = Reason("direct_vs_channel", "direct", "D1", REGISTERED_10_DAYS)
    assert result.findings == [
        conflict("direct_vs_channel", okey(INTERNAL, "d0"), (okey("D1", "o1"),), "direct", "D1",
                 "registration", REGISTERED_10_DAYS),
        conflict("direct_vs_channel", okey(INTERNAL, "d1"), (okey("D1", "o1"),), "direct", "D1",
                 "registration", REGISTERED_10_DAYS),
        Finding("routed_to_channel_manager", "C1", okey(INTERNAL, "d1"),
                "routing.channel_manager", (okey("D1", "o1"),),
                {"channel_manager": "cm-anna", "owner": "D1"}, NOW),
    ]
    account_values = {"channel_owner": "D1", "conflict_flag": True, "conflict_reason": reason,
                      "customer_id": "C1"}
    opp_values = {"channel_owner": "D1", "conflict_flag": True, "conflict_reason": reason,
                  "registration_status": None, "registration_expires_at": None}
    assert dict(result.desired[akey(INTERNAL, "acc-C1")]) == account_values
    assert dict(result.desired[akey("D1", "acc-C1")]) == account_values
    assert dict(result.desired[okey("D1", "o1")]) == {
        **opp_values, "registration_status": "active",
        "registration_expires_at": day("2026-08-20")}
    assert dict(result.desired[okey(INTERNAL, "d0")]) == opp_values
    assert dict(result.desired[okey(INTERNAL, "d1")]) == {**opp_values, "routed_to": "cm-anna"}
    assert result.owners == {"C1": "D1"}
    assert reason.render("internal") == (
        "Direct opportunity on a customer held by D1 since 2026-05-22")
    assert reason.render("partner", "D1") == PARTNER_TEXT_YOURS


def test_two_distributors_earliest_valid_registration_wins() -> None:
    snap = snapshot(
        account(INTERNAL, "acc-C1"), account("D1", "acc-C1", distributor="D1"),
        account("D2", "acc-C1", distributor="D2"), account("D3", "acc-C1", distributor="D3"),
        account("D4", "acc-C1", distributor="D4"),
        partner_opp("D1", "o1", registered_days_ago=30),
        partner_opp("D2", "o2", registered_days_ago=10, amount=Decimal("5000")),
        partner_opp("D3", "o3", registered_days_ago=200),  # expired: no longer valid
    )
    result = evaluate(snap, POLICY, NOW)
    since = day("2026-05-02")
    reason = Reason("channel_vs_channel", "D2", "D1", since)
    assert [f for f in result.findings if f.kind in CONFLICT_KINDS] == [
        conflict("channel_vs_channel", okey("D2", "o2"), (okey("D1", "o1"),), "D2", "D1",
                 "registration", since),
        # an expired registration on a deal still open is no registration at all
        conflict("unregistered_deal", okey("D3", "o3"), (okey("D1", "o1"),), "D3", "D1",
                 "registration", since),
    ]
    expired = [f for f in result.findings if f.kind == "registration_expired"]
    assert [(f.subject, f.rule) for f in expired] == [(okey("D3", "o3"), "registration.term")]
    assert result.owners["C1"] == "D1"
    assert result.desired[akey("D2", "acc-C1")]["conflict_reason"] == reason
    assert result.desired[akey("D1", "acc-C1")]["conflict_flag"] is True
    assert result.desired[akey("D4", "acc-C1")]["conflict_flag"] is False
    assert result.desired[okey("D3", "o3")]["registration_status"] == "expired"
    assert reason.render("internal") == (
        "D2 competes with D1, who holds this customer since 2026-05-02")

    by_amount = evaluate(snap, replace(POLICY, conflict_precedence="largest_amount"), NOW)
    assert by_amount.owners["C1"] == "D2"
    assert [(f.kind, f.subject) for f in by_amount.findings if f.kind in CONFLICT_KINDS] == [
        ("channel_vs_channel", okey("D1", "o1")), ("unregistered_deal", okey("D3", "o3"))]


def test_channel_owner_precedence_keeps_the_incumbent() -> None:
    records = (
        account(INTERNAL, "acc-C1", channel_owner="D2", channel_owner_is_ours=True),
        partner_opp("D1", "o1", registered_days_ago=30),
        partner_opp("D2", "o2", registered_days_ago=10),
    )
    policy = replace(POLICY, conflict_precedence="channel_owner")
    assert evaluate(snapshot(*records), policy, NOW).owners["C1"] == "D2"
    # the same value written by us does not count as a channel manager's explicit choice
    assert evaluate(snapshot(*records), POLICY, NOW).owners["C1"] == "D1"


def test_unregistered_deal_on_another_distributors_customer() -> None:
    snap = snapshot(
        partner_opp("D1", "o1", registered_days_ago=10),
        partner_opp("D2", "o2", registered_days_ago=None),
        partner_opp("D2", "o3", registered_days_ago=None, stage_category="lost"),
        # the holder's own: no conflict of its own, but on the holder's side of this one
        partner_opp("D1", "o4", registered_days_ago=None),
    )
    result = evaluate(snap, POLICY, NOW)
    assert [f for f in result.findings if f.kind in CONFLICT_KINDS] == [
        conflict("unregistered_deal", okey("D2", "o2"), (okey("D1", "o1"), okey("D1", "o4")),
                 "D2", "D1", "registration", REGISTERED_10_DAYS),
    ]
    assert [k.external_id for k, v in result.desired.items() if v["conflict_flag"]] == [
        "o1", "o2", "o4"]


def test_explicit_owner_wins_and_mid_sale_switch_policy() -> None:
    owner_account = account(INTERNAL, "acc-C1", channel_owner="D2")
    records = (owner_account, partner_opp("D1", "o1", registered_days_ago=10))
    keep = evaluate(snapshot(*records), POLICY, NOW)
    assert keep.owners["C1"] == "D2"
    assert [f for f in keep.findings if f.kind in CONFLICT_KINDS] == []
    assert keep.desired[okey("D1", "o1")]["channel_owner"] == "D2"
    switch = evaluate(snapshot(*records), replace(POLICY, mid_sale_switch="new_owner"), NOW)
    assert [f for f in switch.findings if f.kind in CONFLICT_KINDS] == [
        conflict("channel_vs_channel", okey("D1", "o1"), (owner_account.key,), "D1", "D2",
                 "explicit", None),
    ]
    assert switch.desired[owner_account.key]["conflict_flag"] is True


def test_registration_on_a_customer_assigned_to_direct() -> None:
    owner_account = account(INTERNAL, "acc-C1", channel_owner="direct")
    result = evaluate(snapshot(owner_account, partner_opp("D1", "o1", registered_days_ago=10)),
                      POLICY, NOW)
    assert [f for f in result.findings if f.kind in CONFLICT_KINDS] == [
        conflict("registration_on_direct_customer", okey("D1", "o1"), (owner_account.key,),
                 "D1", "direct", "explicit", None),
    ]
    assert result.owners["C1"] == "direct"


def test_release_holds_the_customer_until_direct_may_own_it() -> None:
    released = partner_opp("D1", "o1", registered_days_ago=40, registration_status="released",
                           registration_expires_at=day("2026-05-20"))
    records = (account(INTERNAL, "acc-C1"), released, direct_opp("d1"))
    never = replace(POLICY, direct_after_release=None)
    held = evaluate(snapshot(*records), never, NOW)
    assert held.owners["C1"] is None
    assert [(f.kind, f.subject) for f in held.findings] == [
        ("direct_on_released_customer", okey(INTERNAL, "d1")),
        ("routed_to_channel_manager", okey(INTERNAL, "d1")),
    ]
    after_week = replace(POLICY, direct_after_release=7 * DAY)
    assert evaluate(snapshot(*records), after_week, NOW).owners["C1"] == "direct"
    after_month = replace(POLICY, direct_after_release=30 * DAY)
    snap = snapshot(*records)
    assert evaluate(snap, after_month, NOW).owners["C1"] is None
    assert next_threshold(snap, after_month, NOW) == NOW.replace(day=19, hour=0)
    assert customers_crossing(snap, after_month, NOW, NOW.replace(day=19, hour=0)) == {"C1"}


def test_carried_out_decision_is_cleared_and_reported() -> None:
    snap = snapshot(partner_opp("D1", "o1", registered_days_ago=100,
                                registration_decision="extend", modified_at=NOW - DAY))
    result = evaluate(snap, POLICY, NOW)
    assert dict(result.desired[okey("D1", "o1")]) == {
        "channel_owner": "D1", "conflict_flag": False, "conflict_reason": None,
        "registration_status": "extended", "registration_expires_at": day("2026-08-29"),
        "registration_decision": None,
    }
    assert [(f.kind, f.rule) for f in result.findings] == [
        ("registration_extended", "registration.decision")]


def test_ownership_fallbacks_deletes_and_unconfigured_routing() -> None:
    only_direct = evaluate(snapshot(account(INTERNAL, "acc-C1"), direct_opp("d1")), POLICY, NOW)
    assert only_direct.owners["C1"] == "direct" and only_direct.findings == []
    assert evaluate(snapshot(account(INTERNAL, "acc-C1")), POLICY, NOW).owners["C1"] is None
    gone = partner_opp("D1", "o1", registered_days_ago=10, deleted=True)
    result = evaluate(snapshot(gone, direct_opp("d1")), POLICY, NOW)
    assert result.owners["C1"] == "direct" and okey("D1", "o1") not in result.desired
    no_manager = Policy(registration_term=90 * DAY, inactivity_limit=365 * DAY)
    result = evaluate(snapshot(partner_opp("D1", "o1", registered_days_ago=10),
                               direct_opp("d1")), no_manager, NOW)
    assert [f.kind for f in result.findings] == ["direct_vs_channel", "routing_unconfigured"]
    assert "routed_to" not in result.desired[okey(INTERNAL, "d1")]


def test_only_customers_and_time_thresholds() -> None:
    warning_soon = partner_opp("D1", "o1", registered_days_ago=None, registered_by="D1",
                               registered_at=NOW - 76 * DAY + timedelta(seconds=1))
    other = partner_opp("D2", "o2", "C2", registered_days_ago=5)
    snap = snapshot(warning_soon, other)
    assert set(evaluate(snap, POLICY, NOW, only_customers={"C2"}).owners) == {"C2"}
    second = timedelta(seconds=1)
    assert next_threshold(snap, POLICY, NOW) == NOW + second
    assert customers_crossing(snap, POLICY, NOW, NOW + second) == {"C1"}
    assert customers_crossing(snap, POLICY, NOW + second, NOW + 2 * second) == set()
    expiry = NOW + 14 * DAY + second
    assert customers_crossing(snap, POLICY, expiry - second, expiry) == {"C1"}


def test_partner_text_never_names_anyone() -> None:
    for kind in CONFLICT_KINDS:
        reason = Reason(kind, "D2", "D1", REGISTERED_10_DAYS)
        assert "D1" in reason.render("internal") or kind == "registration_on_direct_customer"
        for viewer in ("D1", "D2", "D3", None):
            text = reason.render("partner", viewer)
            assert text in (PARTNER_TEXT_OTHER, PARTNER_TEXT_YOURS)
            assert "D1" not in text and "D2" not in text and "direct" not in text.lower()



def test_next_thresholds_per_customer_drive_incremental_evaluation() -> None:
    warning_soon = partner_opp("D1", "o1", registered_days_ago=76 - 1)  # warning in 1 day
    released = partner_opp("D2", "o2", "C2", registered_days_ago=40,
                           registration_status="released",
                           registration_expires_at=day("2026-05-20"))
    no_time = partner_opp("D3", "o3", "C3", registered_days_ago=None)
    snap = snapshot(warning_soon, released, no_time)
    result = evaluate(snap, replace(POLICY, direct_after_release=30 * DAY), NOW)
    assert result.next_thresholds == {"C1": NOW + DAY, "C2": NOW.replace(day=19, hour=0)}
    assert due_customers(result.next_thresholds, NOW) == set()
    assert due_customers(result.next_thresholds, NOW + DAY) == {"C1"}
    later = evaluate(snap, replace(POLICY, direct_after_release=30 * DAY), NOW + DAY,
                     only_customers={"C1"})
    assert later.next_thresholds == {"C1": NOW + 15 * DAY}  # the expiry itself
