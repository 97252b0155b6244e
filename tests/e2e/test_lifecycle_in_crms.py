"""Registration lifecycle, decisions, routing and hand-set ownership, made in the sandbox CRMs.

After a first cycle, CRM users change records (a registration goes quiet, another passes
its term, deals are won and lost, a direct rep opens a deal on a registered customer, a
channel manager names a distributor as owner); a second cycle runs; the channel manager
then decides (extend, release) in the CRM; a third cycle carries it out; a fourth changes
nothing. Every assertion reads the sandbox's own data, captured right after each cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cli.cycles import one_cycle
from rules.model import PARTNER_TEXT_OTHER, PARTNER_TEXT_YOURS
from sandbox.world import World
from tests.e2e.support import (
    CrmView,
    config_for,
    deal_seed,
    running_world,
    small_world,
    vendor_id,
    wiring_for,
)

FREE_MAIL = ("gmail.", "yahoo.", "outlook.", "hotmail.", "gmx.", "web.de", "icloud.")
Ref = tuple[str, str, str]  # (connection, entity, vendor id)


@dataclass(slots=True)
class Story:
    world: World
    refs: dict[str, Ref] = field(default_factory=dict)  # role in the story -> record
    after: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per cycle
    sent: list[int] = field(default_factory=list)  # field writes sent per cycle
    ok: list[bool] = field(default_factory=list)
    decided_on: date | None = None
    routed_distributor: str = ""

    def value(self, cycle: int, role: str, output: str) -> Any:
        """``output`` of the record playing ``role`` after cycle ``cycle`` (1-based)."""
        return self.after[cycle - 1][role][output]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


STORY_DEALS = {"hs-northwind-D000007", "hs-northwind-D000002", "hs-brightline-D000006",
               "pd-alpine-D000003"}


def _pick_routing_customer(world: World) -> tuple[str, str, Any, str]:
    """(connection, deal key, account seed, distributor) of an open registration on a
    customer only that distributor knows, whose company has a real web domain."""
    for crm in world.crms:
        if crm.role != "distributor":
            continue
        accounts = {a.key: a for a in crm.accounts}
        for deal in crm.deals:
            account = accounts[deal.account_key]
            site = account.website or ""
            if not deal.registered_by or deal.stage != "open" or deal.key in STORY_DEALS:
                continue
            if not site or any(f in site for f in FREE_MAIL):
                continue
            customer = world.truth.customer_of[(crm.connection, account.key)]
            holders = {c for (c, _), cid in world.truth.customer_of.items() if cid == customer}
            if holders == {crm.connection}:
                return crm.connection, deal.key, account, str(crm.distributor_id)
    raise AssertionError("no registration to route a direct deal to")


def _pick_direct_only_customer(world: World) -> tuple[str, str]:
    """An sf-direct account with an open direct deal, known to no other CRM."""
    crm = next(c for c in world.crms if c.connection == "sf-direct")
    for deal in crm.deals:
        if deal.registered_by or deal.stage != "open":
            continue
        customer = world.truth.customer_of.get(("sf-direct", deal.account_key))
        holders = {c for (c, _), cid in world.truth.customer_of.items() if cid == customer}
        account = next(a for a in crm.accounts if a.key == deal.account_key)
        if holders == {"sf-direct"} and not account.partner_id:
            return deal.account_key, deal.key
    raise AssertionError("no direct-only customer with an open deal in sf-direct")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("lifecycle")
    world = small_world()
    told = Story(world)
    with running_world(world, root / "tls") as sandboxes:
        config = config_for(sandboxes, root / "config")
        crm = CrmView.of(sandboxes, config)
        wiring = wiring_for(config)
        hs_nw: Any = sandboxes["hs-northwind"].app
        hs_bl: Any = sandboxes["hs-brightline"].app
        pd: Any = sandboxes["pd-alpine"].app
        sf: Any = sandboxes["sf-direct"].app

        def ref(role: str, connection: str, entity: str, key: str) -> str:
            record = vendor_id(sandboxes, connection, entity, key)
            told.refs[role] = (connection, entity, record)
            return record

        def cycle() -> None:
            report = one_cycle(wiring, trigger="e2e")
            told.ok.append(report.ok)
            told.sent.append(sum(c.push.sent for c in report.connections.values() if c.push))
            told.after.append({
                role: crm.values(*r) for role, r in told.refs.items()
            })

        try:
            now = datetime.now(UTC)
            quiet = ref("quiet", "hs-northwind", "opportunity", "hs-northwind-D000007")
            old = ref("old", "hs-northwind", "opportunity", "hs-northwind-D000002")
            won = ref("won", "hs-brightline", "opportunity", "hs-brightline-D000006")
            lost = ref("lost", "pd-alpine", "opportunity", "pd-alpine-D000003")
            reg_home, reg_key, reg_account, told.routed_distributor = _pick_routing_customer(world)
            ref("registered", reg_home, "opportunity", reg_key)
            ref("registered_account", reg_home, "account", reg_account.key)
            owned_account_key, owned_deal_key = _pick_direct_only_customer(world)
            owned_account = ref("owned_account", "sf-direct", "account", owned_account_key)
            ref("owned_deal", "sf-direct", "opportunity", owned_deal_key)
            cycle()

            # -- what CRM users do during the week ----------------------------------------
            hs_nw.account.update("deals", quiet, {"notes_last_updated": _ms(now - timedelta(
                days=40))})
            hs_nw.account.update("deals", old, {
                "registration_date": _ms(now - timedelta(days=95)),
                "notes_last_updated": _ms(now - timedelta(days=1)),
            })
            hs_bl.account.update("deals", won, {"dealstage": "closedwon"})
            pd.user_update("deals", int(lost), {"status": "lost"})
            account_id = sf.org.create("Account", {
                "Name": reg_account.name, "Website": reg_account.website,
            })
            told.refs["routed_account"] = ("sf-direct", "account", account_id)
            deal_id = sf.org.create("Opportunity", {
                "Name": f"{reg_account.name} - inbound", "AccountId": account_id,
                "StageName": "Prospecting", "Amount": 25000.0,
                "CloseDate": (now + timedelta(days=45)).date(),
            })
            told.refs["routed"] = ("sf-direct", "opportunity", deal_id)
            manager = sandboxes["sf-direct"].seed_ids["user:sf-u-cm"]
            sf.org.update("Account", owned_account, {"Channel_Owner__c": "dist-alpine"},
                          by=manager)
            cycle()

            # -- the channel manager decides, in the CRM ----------------------------------
            told.decided_on = datetime.now(UTC).date()
            hs_nw.account.update("deals", old, {"registration_decision": "extend"})
            hs_nw.account.update("deals", quiet, {"registration_decision": "release"})
            cycle()
            cycle()
        finally:
            wiring.close()
        yield told


def test_every_cycle_succeeds_and_the_last_writes_nothing(story: Story) -> None:
    assert story.ok == [True, True, True, True]
    assert story.sent[0] > 0 and story.sent[1] > 0 and story.sent[2] > 0
    assert story.sent[3] == 0


def test_active_registrations_before_the_changes(story: Story) -> None:
    for role in ("quiet", "old", "won", "lost"):
        assert story.value(1, role, "registration_status") == "active", role
    assert story.value(1, "registered", "registration_status") in ("active", "expiring")


def test_expired_by_inactivity(story: Story) -> None:
    assert story.value(2, "quiet", "registration_status") == "expired"
    quiet_since = datetime.now(UTC) - timedelta(days=40)
    expected = (quiet_since + timedelta(days=30)).date()
    assert story.value(2, "quiet", "registration_expires_at") in (
        expected, expected - timedelta(days=1)
    )


def test_expired_by_term(story: Story) -> None:
    assert story.value(2, "old", "registration_status") == "expired"
    expected = (datetime.now(UTC) - timedelta(days=95) + timedelta(days=90)).date()
    assert story.value(2, "old", "registration_expires_at") in (
        expected, expected - timedelta(days=1)
    )


def test_won_and_lost_close_the_registration(story: Story) -> None:
    assert story.value(2, "won", "registration_status") == "won"
    assert story.value(2, "lost", "registration_status") == "lost"


def test_extend_decision_is_carried_out_and_cleared(story: Story) -> None:
    assert story.decided_on is not None
    assert story.value(3, "old", "registration_status") == "extended"
    assert story.value(3, "old", "registration_decision") is None
    new_end = story.value(3, "old", "registration_expires_at")
    assert new_end in (story.decided_on + timedelta(days=90),
                       story.decided_on + timedelta(days=91))
    assert story.value(4, "old", "registration_status") == "extended"  # and it stays


def test_release_decision_is_carried_out_and_cleared(story: Story) -> None:
    assert story.decided_on is not None
    assert story.value(3, "quiet", "registration_status") == "released"
    assert story.value(3, "quiet", "registration_decision") is None
    assert story.value(3, "quiet", "registration_expires_at") in (
        story.decided_on, story.decided_on + timedelta(days=1)
    )
    assert story.value(4, "quiet", "registration_status") == "released"


def test_new_direct_deal_on_a_registered_customer_is_routed(story: Story) -> None:
    assert story.value(2, "routed", "routed_to") == "sf-u-cm"
    assert story.value(2, "routed", "conflict_flag") is True
    distributor = story.routed_distributor
    reason = story.value(2, "routed", "conflict_reason")
    assert isinstance(reason, str) and distributor in reason
    # ownership in every CRM of the customer; the distributor keeps its claim and sees
    # only partner-safe text
    assert story.value(1, "registered_account", "channel_owner") == distributor
    assert story.value(2, "routed_account", "channel_owner") == distributor
    assert story.value(2, "registered_account", "channel_owner") == distributor
    assert story.value(2, "registered", "conflict_flag") is True
    assert story.value(2, "registered", "conflict_reason") == PARTNER_TEXT_YOURS
    assert story.value(2, "registered", "registration_status") == story.value(
        1, "registered", "registration_status"
    )


def test_direct_deal_on_a_customer_a_manager_gave_to_a_distributor(story: Story) -> None:
    assert story.value(1, "owned_deal", "conflict_flag") is False
    assert story.value(1, "owned_account", "channel_owner") == "direct"
    assert story.value(2, "owned_account", "channel_owner") == "dist-alpine"  # a person's
    assert story.value(2, "owned_deal", "conflict_flag") is True
    reason = story.value(2, "owned_deal", "conflict_reason")
    assert isinstance(reason, str) and "Direct opportunity" in reason and "dist-alpine" in reason
    assert PARTNER_TEXT_OTHER not in reason


def test_seed_of_the_story_is_what_the_test_assumes(story: Story) -> None:
    for key in sorted(STORY_DEALS):
        deal = deal_seed(story.world, key.rsplit("-", 1)[0], key)
        assert deal.registered_by and deal.stage == "open"
        assert not deal.registration_decision
