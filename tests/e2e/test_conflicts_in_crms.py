"""Every planted conflict of the scenario, as each sandbox CRM shows it after one cycle.

The ground truth (``world.truth.conflicts``) names the records; the assertions read the
write-back fields from each sandbox's own data. Internal CRMs get the reason naming the
parties; distributor CRMs get only partner-safe text and never another distributor's id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.cycles import one_cycle
from rules.model import PARTNER_TEXT_OTHER, PARTNER_TEXT_YOURS
from sandbox.launch import SandboxSet
from sandbox.layout import DISTRIBUTORS
from sandbox.world import World
from tests.e2e.support import (
    CrmView,
    accounts_of,
    config_for,
    deal_seed,
    running_world,
    small_world,
    vendor_id,
    wiring_for,
)

PARTNER_TEXTS = {PARTNER_TEXT_OTHER, PARTNER_TEXT_YOURS}


@dataclass(slots=True)
class Synced:
    world: World
    sandboxes: SandboxSet
    crm: CrmView
    reports: list[Any]

    def role(self, connection: str) -> str:
        return self.sandboxes[connection].role

    def opp(self, connection: str, key: str, output: str) -> Any:
        record = vendor_id(self.sandboxes, connection, "opportunity", key)
        return self.crm.value(connection, "opportunity", record, output)

    def account(self, connection: str, key: str, output: str) -> Any:
        record = vendor_id(self.sandboxes, connection, "account", key)
        return self.crm.value(connection, "account", record, output)

    def conflicts(self, kind: str) -> list[dict[str, Any]]:
        found = [c for c in self.world.truth.conflicts if c["kind"] == kind]
        assert found, f"the small world plants no {kind}"
        return found


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    """The small world after two cycles (the second must change nothing)."""
    root = tmp_path_factory.mktemp("conflicts")
    world = small_world()
    with running_world(world, root / "tls") as sandboxes:
        config = config_for(sandboxes, root / "config")
        wiring = wiring_for(config)
        try:
            first = one_cycle(wiring, trigger="e2e")
            second = one_cycle(wiring, trigger="e2e")
        finally:
            wiring.close()
        yield Synced(world, sandboxes, CrmView.of(sandboxes, config), [first, second])


def test_both_cycles_succeed_and_the_second_writes_nothing(synced: Synced) -> None:
    first, second = synced.reports
    assert first.ok and second.ok
    assert sum(c.push.sent for c in first.connections.values() if c.push) > 0
    assert all(c.push is not None and c.push.sent == 0 for c in second.connections.values())


def _assert_internal_reason(text: Any, *names: str) -> None:
    assert isinstance(text, str) and text, f"no reason written: {text!r}"
    for name in names:
        assert name in text, f"{name!r} not named in {text!r}"


def _assert_partner_reason(text: Any, viewer: str | None) -> None:
    assert text in PARTNER_TEXTS, f"not a partner-safe reason: {text!r}"
    others = [d for d in DISTRIBUTORS if d != viewer]
    assert not any(o in text for o in others)


def _owner_set_by_hand(synced: Synced, case: dict[str, Any]) -> bool:
    """The internal account of the planted customer carries a channel owner from the seed."""
    for connection, key in accounts_of(synced.world, str(case["customer"])):
        if synced.role(connection) != "internal":
            continue
        crm = next(c for c in synced.world.crms if c.connection == connection)
        if any(a.key == key and a.channel_owner for a in crm.accounts):
            return True
    return False


def test_direct_opportunity_on_a_registered_customer(synced: Synced) -> None:
    checked_partner_side = 0
    for case in synced.conflicts("direct_vs_channel"):
        (dist_home, _, reg_key), (internal, _, direct_key) = case["records"]
        distributor = str(case["distributor"])
        assert synced.opp(internal, direct_key, "conflict_flag") is True
        _assert_internal_reason(
            synced.opp(internal, direct_key, "conflict_reason"), "Direct opportunity", distributor
        )
        assert synced.opp(dist_home, reg_key, "registration_status") == "active"
        if _owner_set_by_hand(synced, case):
            continue  # see test_registered_customer_with_owner_set_by_hand_flags_partner
        assert synced.opp(dist_home, reg_key, "conflict_flag") is True
        reason = synced.opp(dist_home, reg_key, "conflict_reason")
        if synced.role(dist_home) == "distributor":
            _assert_partner_reason(reason, distributor)
            assert reason == PARTNER_TEXT_YOURS  # it holds the customer: its claim stands
            checked_partner_side += 1
    assert checked_partner_side > 0


def test_registered_customer_with_owner_set_by_hand_flags_partner(synced: Synced) -> None:
    cases = [c for c in synced.conflicts("direct_vs_channel") if _owner_set_by_hand(synced, c)]
    assert cases, "no planted direct conflict with an owner set by hand"
    for case in cases:
        (dist_home, _, reg_key), _direct = case["records"]
        assert synced.opp(dist_home, reg_key, "conflict_flag") is True
        assert synced.opp(dist_home, reg_key, "conflict_reason") == PARTNER_TEXT_YOURS


def _channel_vs_channel(synced: Synced, case: dict[str, Any]) -> None:
    (win_home, _, win_key), (lose_home, _, lose_key) = case["records"]
    winner, loser = str(case["winner"]), str(next(iter(case["flagged"])))
    assert synced.opp(lose_home, lose_key, "conflict_flag") is True
    lose_reason = synced.opp(lose_home, lose_key, "conflict_reason")
    if synced.role(lose_home) == "distributor":
        _assert_partner_reason(lose_reason, loser)
        assert lose_reason == PARTNER_TEXT_OTHER
    else:
        _assert_internal_reason(lose_reason, loser, winner)
    win_reason = synced.opp(win_home, win_key, "conflict_reason")
    if synced.role(win_home) == "distributor":
        _assert_partner_reason(win_reason, winner)
        assert win_reason == PARTNER_TEXT_YOURS
    else:
        _assert_internal_reason(win_reason, loser, winner)
    # the customer is the winner's, in every CRM that holds it
    _assert_owner_everywhere(synced, str(case["customer"]), winner)


def test_two_distributors_earliest_registration_wins(synced: Synced) -> None:
    cases = [
        c for c in synced.conflicts("channel_vs_channel") if not _owner_set_by_hand(synced, c)
    ]
    assert cases
    for case in cases:
        _channel_vs_channel(synced, case)


def test_two_distributors_when_the_winner_is_also_the_hand_set_owner(synced: Synced) -> None:
    cases = [c for c in synced.conflicts("channel_vs_channel") if _owner_set_by_hand(synced, c)]
    assert cases, "no planted channel conflict with an owner set by hand"
    for case in cases:
        _channel_vs_channel(synced, case)


def test_unregistered_deal_on_another_distributors_customer(synced: Synced) -> None:
    for case in synced.conflicts("unregistered_on_other_customer"):
        _owner_home, (intruder_home, _, intruder_key) = case["records"]
        owner, intruder = str(case["owner"]), str(case["intruder"])
        assert synced.opp(intruder_home, intruder_key, "conflict_flag") is True
        reason = synced.opp(intruder_home, intruder_key, "conflict_reason")
        _assert_partner_reason(reason, intruder)
        assert reason == PARTNER_TEXT_OTHER
        assert synced.opp(intruder_home, intruder_key, "registration_status") is None
        internal_accounts = 0
        for connection, key in accounts_of(synced.world, str(case["customer"])):
            if synced.role(connection) == "internal":
                internal_accounts += 1
                assert synced.account(connection, key, "conflict_flag") is True
                _assert_internal_reason(
                    synced.account(connection, key, "conflict_reason"),
                    intruder, owner, "unregistered",
                )
            elif connection == intruder_home:
                assert synced.account(connection, key, "conflict_flag") is True
                _assert_partner_reason(synced.account(connection, key, "conflict_reason"),
                                       intruder)
        assert internal_accounts > 0
        _assert_owner_everywhere(synced, str(case["customer"]), owner)


def test_inbound_direct_deal_is_routed_to_the_channel_manager(synced: Synced) -> None:
    for case in synced.conflicts("routing"):
        (dist_home, _, reg_key), (internal, _, direct_key) = case["records"]
        assert synced.opp(internal, direct_key, "routed_to") == case["routed_to"]
        assert synced.opp(internal, direct_key, "conflict_flag") is True
        _assert_internal_reason(
            synced.opp(internal, direct_key, "conflict_reason"), str(case["distributor"])
        )
        # a distributor CRM never receives the routing (an internal user)
        field = synced.crm.field(dist_home, "opportunity", "routed_to")
        if field is not None:
            assert synced.opp(dist_home, reg_key, "routed_to") is None


def test_older_direct_deal_is_not_routed(synced: Synced) -> None:
    """A direct deal older than the registration stays with its rep (flagged, not routed)."""
    for case in synced.conflicts("direct_vs_channel"):
        if case.get("inbound"):
            continue
        (_, _, reg_key), (internal, _, direct_key) = case["records"]
        direct = deal_seed(synced.world, internal, direct_key)
        registered = deal_seed(synced.world, str(case["records"][0][0]), reg_key)
        if direct.created_at < registered.registered_at:
            assert synced.opp(internal, direct_key, "routed_to") is None


def _assert_owner_everywhere(synced: Synced, customer: str, owner: str) -> None:
    for connection, key in accounts_of(synced.world, customer):
        shown = synced.account(connection, key, "channel_owner")
        if synced.role(connection) == "internal":
            assert shown == owner, f"{connection} {key}: {shown!r}"
        else:
            mine = synced.sandboxes[connection].distributor_id
            assert shown == (owner if owner == mine else "another party"), (connection, shown)


def test_channel_owner_on_every_record_of_planted_customers(synced: Synced) -> None:
    for case in synced.world.truth.conflicts:
        if case["kind"] == "channel_vs_channel":
            owner = str(case["winner"])
        elif case["kind"] == "unregistered_on_other_customer":
            owner = str(case["owner"])
        else:
            owner = str(case["distributor"])
        _assert_owner_everywhere(synced, str(case["customer"]), owner)
        records: list[list[str]] = list(case["records"])  # type: ignore[call-overload]  # truth entries are loosely typed
        for connection, _, key in records:
            shown = synced.opp(connection, key, "channel_owner")
            if synced.role(connection) == "internal":
                assert shown == owner
            else:
                mine = synced.sandboxes[connection].distributor_id
                assert shown in (mine, "another party")
                assert shown == (owner if owner == mine else "another party")


def test_registration_states_and_expiry_dates(synced: Synced) -> None:
    """Each seeded registration without a decision: its state and expiry date, per policy
    (term 90 days, inactivity 30 days, warning 14 days), computed here from the seed."""
    now = datetime.now(UTC)
    seen: set[str] = set()
    for crm in synced.world.crms:
        for deal in crm.deals:
            if not deal.registered_by or deal.registration_decision:
                continue
            state, expires = _expected(deal, now)
            seen.add(state)
            shown = synced.opp(crm.connection, deal.key, "registration_status")
            assert shown == state, f"{crm.connection} {deal.key}: {shown!r} != {state!r}"
            if expires is not None:
                written = synced.opp(crm.connection, deal.key, "registration_expires_at")
                # date-only CRMs store the registration day at midnight: a day earlier at most
                assert written in (expires, expires - timedelta(days=1)), (deal.key, written)
    assert {"active", "expiring", "won", "lost"} <= seen


def _expected(deal: Any, now: datetime) -> tuple[str, Any]:
    if deal.stage in ("won", "lost"):
        return deal.stage, None
    activity = max(deal.registered_at, deal.last_activity_at or deal.registered_at)
    expires = min(deal.registered_at + timedelta(days=90), activity + timedelta(days=30))
    if now >= expires:
        return "expired", expires.date()
    if now >= expires - timedelta(days=14):
        return "expiring", expires.date()
    return "active", expires.date()


def test_seeded_reassignment_is_carried_out(synced: Synced) -> None:
    """A manager's 'reassign' decision in the CRM: the decision field is cleared and the
    original distributor's deal shows its claim released on the day of the decision; the
    new holder's registration is not that distributor's to see."""
    cases = [
        (crm.connection, d) for crm in synced.world.crms for d in crm.deals
        if d.registration_decision == "reassign"
    ]
    assert cases, "the small world seeds no reassignment"
    for connection, deal in cases:
        assert synced.opp(connection, deal.key, "registration_decision") is None
        assert synced.opp(connection, deal.key, "registration_status") == "released"
        decided = min(deal.modified_at, datetime.now(UTC)).date()
        expires = synced.opp(connection, deal.key, "registration_expires_at")
        assert expires in (decided, decided - timedelta(days=1))
        if synced.role(connection) == "distributor":  # never the new holder's name
            assert synced.opp(connection, deal.key, "channel_owner") != deal.reassign_to


def test_distributor_crms_never_name_another_distributor(synced: Synced) -> None:
    """Every write-back field of every record in every distributor CRM."""
    checked = 0
    for sb in synced.sandboxes:
        if sb.role != "distributor":
            continue
        others = [d for d in DISTRIBUTORS if d != sb.distributor_id]
        crm = next(c for c in synced.world.crms if c.connection == sb.connection)
        for entity, keys in (("account", crm.accounts), ("opportunity", crm.deals)):
            for seed in keys:
                record = vendor_id(synced.sandboxes, sb.connection, entity, seed.key)
                for output, value in synced.crm.values(sb.connection, entity, record).items():
                    if output == "registration_decision" or not isinstance(value, str):
                        continue
                    assert not any(o in value for o in others), (sb.connection, record, value)
                    checked += 1
    assert checked > 0
