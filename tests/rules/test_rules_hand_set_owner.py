"""Conflicts on a customer whose owner a channel manager set by hand, and reassignments
as the original distributor's CRM shows them."""

from __future__ import annotations

from dataclasses import replace

from rules.engine import Evaluation, evaluate
from rules.model import (
    CONFLICT_KINDS,
    PARTNER_TEXT_OTHER,
    PARTNER_TEXT_YOURS,
    AccountFact,
    OpportunityFact,
    Policy,
    RecordKey,
    Snapshot,
)
from sync.visibility import ANOTHER_PARTY, Audience, Secrets, visible_value
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

POLICY = Policy(registration_term=90 * DAY, inactivity_limit=365 * DAY, warning_window=14 * DAY)
NEW_OWNER = replace(POLICY, mid_sale_switch="new_owner")
SECRETS = Secrets.of(("D1", "D2", "D3"), ())


def conflicts(result: Evaluation) -> list[tuple[str, RecordKey, str | None]]:
    return [(f.kind, f.subject, f.details["holder"]) for f in result.findings
            if f.kind in CONFLICT_KINDS]


def flagged(result: Evaluation) -> set[RecordKey]:
    return {key for key, values in result.desired.items()
            if key.entity == "opportunity" and values["conflict_flag"]}


def shown(result: Evaluation, key: RecordKey, output: str, viewer: str | None) -> object:
    """The value as the CRM holding ``key`` receives it (a distributor's, or internal)."""
    audience = Audience("distributor", viewer) if viewer else Audience("internal")
    return visible_value(output, result.desired[key][output], audience, SECRETS)


def owned_by_hand(owner: str, *records: AccountFact | OpportunityFact) -> Snapshot:
    return snapshot(account(INTERNAL, "acc-C1", channel_owner=owner), *records)


def test_direct_deal_on_a_hand_set_owners_customer_flags_the_owners_registration() -> None:
    records = (account("D1", "acc-C1", distributor="D1"),
               partner_opp("D1", "o1", registered_days_ago=10), direct_opp("d1"))
    by_hand = evaluate(owned_by_hand("D1", *records), POLICY, NOW)
    by_registration = evaluate(snapshot(account(INTERNAL, "acc-C1"), *records), POLICY, NOW)
    for result in (by_hand, by_registration):
        assert conflicts(result) == [("direct_vs_channel", okey(INTERNAL, "d1"), "D1")]
        assert flagged(result) == {okey(INTERNAL, "d1"), okey("D1", "o1")}
        assert shown(result, okey("D1", "o1"), "conflict_reason", "D1") == PARTNER_TEXT_YOURS
        assert shown(result, akey("D1", "acc-C1"), "conflict_flag", "D1") is True
    finding = next(f for f in by_hand.findings if f.kind == "direct_vs_channel")
    assert finding.evidence == (akey(INTERNAL, "acc-C1"), okey("D1", "o1"))


def test_unregistered_deal_on_a_hand_set_owners_customer_flags_both_sides() -> None:
    result = evaluate(owned_by_hand(
        "D1", partner_opp("D1", "o1", registered_days_ago=10),
        partner_opp("D2", "o2", registered_days_ago=None),
    ), POLICY, NOW)
    assert conflicts(result) == [("unregistered_deal", okey("D2", "o2"), "D1")]
    assert flagged(result) == {okey("D1", "o1"), okey("D2", "o2")}
    assert shown(result, okey("D1", "o1"), "conflict_reason", "D1") == PARTNER_TEXT_YOURS
    assert shown(result, okey("D2", "o2"), "conflict_reason", "D2") == PARTNER_TEXT_OTHER


def test_hand_set_owner_holding_the_earliest_registration_is_no_mid_sale_switch() -> None:
    records = (partner_opp("D1", "o1", registered_days_ago=30),
               partner_opp("D2", "o2", registered_days_ago=10))
    for policy in (POLICY, NEW_OWNER):
        result = evaluate(owned_by_hand("D1", *records), policy, NOW)
        assert result.owners["C1"] == "D1"
        assert conflicts(result) == [("channel_vs_channel", okey("D2", "o2"), "D1")]
        assert flagged(result) == {okey("D1", "o1"), okey("D2", "o2")}
        assert shown(result, okey("D2", "o2"), "conflict_reason", "D2") == PARTNER_TEXT_OTHER
        assert shown(result, okey("D1", "o1"), "conflict_reason", "D1") == PARTNER_TEXT_YOURS
        internal = result.desired[okey("D1", "o1")]["conflict_reason"].render("internal")
        assert "D1" in internal and "D2" in internal


def test_keep_current_protects_only_the_registration_a_switch_interrupted() -> None:
    # D1 held the customer by the earliest registration; a manager names D2 the owner
    records = (partner_opp("D1", "o1", registered_days_ago=30),
               partner_opp("D3", "o3", registered_days_ago=10),
               partner_opp("D2", "o2", registered_days_ago=5))
    keep = evaluate(owned_by_hand("D2", *records), POLICY, NOW)
    assert keep.owners["C1"] == "D2"
    # D1 runs on unflagged; D3 lost to D1 before the switch and loses to D2 now
    assert conflicts(keep) == [("channel_vs_channel", okey("D3", "o3"), "D2")]
    assert flagged(keep) == {okey("D3", "o3"), okey("D2", "o2")}
    assert shown(keep, okey("D1", "o1"), "channel_owner", "D1") == ANOTHER_PARTY
    switch = evaluate(owned_by_hand("D2", *records), NEW_OWNER, NOW)
    assert conflicts(switch) == [("channel_vs_channel", okey("D1", "o1"), "D2"),
                                 ("channel_vs_channel", okey("D3", "o3"), "D2")]
    assert flagged(switch) == {okey("D1", "o1"), okey("D3", "o3"), okey("D2", "o2")}


def test_registration_on_a_direct_customer_flags_the_direct_deals_too() -> None:
    result = evaluate(owned_by_hand(
        "direct", partner_opp("D1", "o1", registered_days_ago=10), direct_opp("d1"),
        direct_opp("d2", stage_category="won"),
    ), POLICY, NOW)
    assert conflicts(result) == [
        ("registration_on_direct_customer", okey("D1", "o1"), "direct")]
    assert flagged(result) == {okey("D1", "o1"), okey(INTERNAL, "d1")}


def test_a_reassigned_deal_shows_released_to_its_distributor_and_stays_so() -> None:
    decided = NOW - 2 * DAY
    deal = partner_opp("D1", "o1", registered_days_ago=95, registration_status="expired",
                       registration_decision="reassign", reassign_to="D2",
                       modified_at=decided)
    own_account = account("D1", "acc-C1", distributor="D1")
    first = evaluate(snapshot(own_account, deal), POLICY, NOW)
    values = first.desired[deal.key]
    assert (values["registration_status"], values["registration_expires_at"],
            values["channel_owner"]) == ("released", decided.date(), "D2")
    assert "registration_decision" in values  # cleared
    assert shown(first, deal.key, "channel_owner", "D1") == ANOTHER_PARTY
    assert shown(first, akey("D1", "acc-C1"), "channel_owner", "D1") == ANOTHER_PARTY
    assert [f.kind for f in first.findings] == ["registration_reassigned"]
    assert first.owners["C1"] == "D2"
    # the next cycles read back what we wrote: the same values, nothing to clear
    echoed = replace(deal, registration_decision=None, registration_status="released",
                     registration_expires_at=decided.date(), modified_at=NOW)
    for later in (NOW, NOW + 30 * DAY):
        again = evaluate(snapshot(own_account, echoed), POLICY, later)
        assert dict(again.desired[deal.key]) == {
            k: v for k, v in values.items() if k != "registration_decision"}
        assert again.owners["C1"] == "D2" and again.findings == []
    # D2's term from the decision day ends at 90 days: the customer is nobody's then
    lapsed = evaluate(snapshot(own_account, echoed), POLICY, NOW + 88 * DAY)
    assert lapsed.owners["C1"] is None
    assert lapsed.desired[deal.key]["registration_status"] == "released"
    assert [f.kind for f in lapsed.findings] == ["registration_expired"]
    assert decided.date() == day("2026-05-30")
