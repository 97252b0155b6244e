"""End to end against the sandboxes: our own writes echoing back never cause another write.

Cycle 1 writes the initial flags. Cycle 2, with nothing changed in any CRM but our own
writes, makes no write call at all (the sandboxes' request logs show no write endpoint)
and queues nothing. A real change (a direct deal on a customer a distributor registered)
then leads to exactly the writes the policy needs, and the cycle after that to none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

import config
from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from config.mapping_compiler import compile_mapping
from config.yamlsource import parse_yaml
from connectors.base import Entity
from rules.model import PARTNER_TEXT_YOURS
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sandbox.world import World
from state.rows import AccountRow, OpportunityRow
from sync.cycle import CycleReport, Runtime
from sync.plan import Target, plan_writes
from sync.snapshot import build_snapshot
from sync.visibility import Audience, Secrets
from wiring import Wiring

CHANNEL_MANAGER = "sf-u-cm"
# requests that read, even where the vendor API uses POST for them
READ_ROUTES = ("token", "/search", "batch/read", "/query")


@dataclass
class Running:
    world: World
    sandboxes: SandboxSet
    wiring: Wiring


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("fixed-point")
    world = generate(seed=20, customers=80)  # the change lands on a Pipedrive partner
    sandboxes = start_world(world, tls_dir=directory / "tls")
    try:
        wiring = Wiring(load_settings(write_config(
            sandboxes, directory, channel_managers={"sf-direct": CHANNEL_MANAGER}
        )))
        try:
            yield Running(world, sandboxes, wiring)
        finally:
            wiring.close()
    finally:
        sandboxes.stop()


def write_calls(sandboxes: SandboxSet) -> dict[str, dict[str, int]]:
    """connection -> write request -> count, from each sandbox's request log."""
    calls: dict[str, dict[str, int]] = {}
    for sandbox in sandboxes:
        for request, count in sandbox.app.requests.snapshot().items():
            method, _, route = request.partition(" ")
            if method == "GET" or any(part in route for part in READ_ROUTES):
                continue
            calls.setdefault(sandbox.connection, {})[request] = count
    return calls


def cycle(run: Running) -> tuple[CycleReport, dict[str, dict[str, int]]]:
    for sandbox in run.sandboxes:
        sandbox.app.requests.reset()
    report = one_cycle(run.wiring)
    assert report.ok, {n: c.error for n, c in report.connections.items() if c.error}
    return report, write_calls(run.sandboxes)


def write_field(run: Running, connection: str, entity: str, output: str) -> str:
    runtime = next(rt for rt in run.wiring.runtimes() if rt.name == connection)
    return runtime.mapping.writes(Entity(entity))[output].field


def outbox_total(run: Running) -> int:
    counts = run.wiring.store().outbox_counts()
    return sum(n for states in counts.values() for n in states.values())


def registered_customer(world: World) -> tuple[str, str, str]:
    """(customer, distributor, sf-direct account seed key) of a customer without a conflict:
    an account in Salesforce (no owner set on it) and one in a distributor's own CRM, which
    holds all of the customer's deals, at least one an active registration, none with a
    pending decision."""
    planted = {entry["customer"] for entry in world.truth.conflicts}
    crms = {crm.connection: crm for crm in world.crms}
    deals_of: dict[str, list[tuple[str, Any]]] = {}
    for crm in world.crms:
        for deal in crm.deals:
            company = world.truth.customer_of.get((crm.connection, deal.account_key))
            if company is not None:
                deals_of.setdefault(company, []).append((crm.connection, deal))
    accounts_of: dict[str, list[tuple[str, str]]] = {}
    for (connection, key), company in world.truth.customer_of.items():
        accounts_of.setdefault(company, []).append((connection, key))
    for company, deals in sorted(deals_of.items()):
        homes = {connection for connection, _ in deals}
        accounts = sorted(accounts_of[company])
        if company in planted or len(homes) != 1 or len(accounts) != 2:
            continue
        home = homes.pop()
        connections = [connection for connection, _ in accounts]
        if crms[home].role != "distributor" or sorted(connections) != sorted(
                [home, "sf-direct"]):
            continue
        if any(deal.registration_decision for _, deal in deals):
            continue
        salesforce = next(k for c, k in accounts if c == "sf-direct")
        if any(a.key == salesforce and a.channel_owner for a in crms["sf-direct"].accounts):
            continue  # the registration, not an owner set by hand, must hold the customer
        if any(world.truth.registrations.get((home, deal.key)) == "active" for _, deal in deals):
            distributor = crms[home].distributor_id
            assert distributor is not None
            return company, distributor, salesforce
    raise AssertionError("the scenario has no registered customer with a Salesforce account")


def test_our_own_writes_never_cause_another_write(running: Running) -> None:
    first, first_calls = cycle(running)
    assert first.stats["queued"] > 100 and first_calls  # the initial flags
    assert not any(c.push is not None and (c.push.failed or c.push.dead)
                   for c in first.connections.values())
    queued = outbox_total(running)

    second, second_calls = cycle(running)
    assert second_calls == {}, "a cycle without change made write calls"
    assert (second.stats["planned_writes"], second.stats["queued"]) == (0, 0)
    assert outbox_total(running) == queued
    assert all(c.push is not None and c.push.sent == 0 for c in second.connections.values())

    # a real change: a direct rep opens a deal on a customer a distributor registered
    company, distributor, account_key = registered_customer(running.world)
    salesforce = running.sandboxes["sf-direct"]
    account_id = salesforce.seed_ids[f"account:{account_key}"]
    deal_id = salesforce.app.org.create("Opportunity", {  # type: ignore[attr-defined]  # the Salesforce sandbox's org
        "Name": "Direct: line sensors", "AccountId": account_id, "StageName": "Prospecting",
        "CloseDate": (datetime.now(UTC) + timedelta(days=40)).date().isoformat(),
        "Amount": 48_000, "CurrencyIsoCode": "EUR",
    })

    third, third_calls = cycle(running)
    home = next(crm.connection for crm in running.world.crms
                if crm.distributor_id == distributor and crm.role == "distributor")
    planned = {(w.connection, w.entity, w.external_id, w.field): w.value for w in third.planned}
    assert set(third_calls) == {"sf-direct", home}
    assert third.stats["queued"] == len(planned)

    on_deal = {f: v for (c, e, x, f), v in planned.items() if x == deal_id}
    assert on_deal == {
        "Channel_Owner__c": distributor,
        "Channel_Conflict__c": True,
        "Channel_Conflict_Reason__c": on_deal["Channel_Conflict_Reason__c"],
        "Routed_To__c": CHANNEL_MANAGER,
    }
    assert on_deal["Channel_Conflict_Reason__c"].startswith(
        f"Direct opportunity on a customer held by {distributor}")
    # flagged: each of the customer's two accounts, and the registration that holds it
    others = {(c, e, x) for (c, e, x, f) in planned if x != deal_id}
    expected = {("sf-direct", "account"), (home, "account"), (home, "opportunity")}
    assert {(c, e) for c, e, _ in others} == expected
    assert len(others) == len(expected)
    for connection, entity, external_id in others:
        fields = {f: v for (c, e, x, f), v in planned.items()
                  if (c, e, x) == (connection, entity, external_id)}
        flag, reason = (write_field(running, connection, entity, output)
                        for output in ("conflict_flag", "conflict_reason"))
        assert set(fields) == {flag, reason}, fields
        assert fields[flag] in (True, "Yes")
        if connection == home:  # the partner reads that its claim stands, and no name
            assert fields[reason] == PARTNER_TEXT_YOURS

    fourth, fourth_calls = cycle(running)
    assert fourth_calls == {}, "the echo of cycle 3's writes caused more writes"
    assert fourth.stats["queued"] == 0
    # what the CRMs show now, as read back by cycle 4
    shown = running.wiring.store().current_values("sf-direct", "opportunity", [deal_id])
    _etag, fields = shown[deal_id]
    assert (fields["Channel_Owner__c"], fields["Channel_Conflict__c"], fields["Routed_To__c"]) \
        == (distributor, True, CHANNEL_MANAGER)
    assert company  # the customer the change was made on (kept for a failure message)


def test_write_calls_ignores_reads(running: Running) -> None:
    """The classifier itself: a search (POST) is a read, a batch update is a write."""
    hubspot = next(s for s in running.sandboxes if s.vendor == "hubspot")
    hubspot.app.requests.reset()
    hubspot.app.requests.record("POST", "/crm/v3/objects/<obj>/search")
    assert write_calls(running.sandboxes).get(hubspot.connection) is None
    hubspot.app.requests.record("POST", "/crm/v3/objects/<obj>/batch/update")
    assert write_calls(running.sandboxes)[hubspot.connection] == {
        "POST /crm/v3/objects/<obj>/batch/update": 1}
    hubspot.app.requests.reset()


# -- whose owner value is it: the pieces behind the property, without sandboxes ---------------

def salesforce_runtime(owner_values: dict[str, str] | None = None) -> Runtime:
    """The default Salesforce mapping; ``owner_values`` adds a value map to the owner field
    (vendor label -> distributor id on read, the reverse on write)."""
    path = Path(config.__file__).parent / "mappings" / "salesforce.yaml"
    doc = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if owner_values:
        account = doc.data["entities"]["account"]
        account["fields"]["channel_owner"] = {"field": "Channel_Owner__c",
                                              "values": owner_values}
        account["writes"]["channel_owner"] = {
            "field": "Channel_Owner__c", "policy": "human_wins",
            "values": {v: k for k, v in owner_values.items()}}
    mapping = compile_mapping(doc, doc.data, (), "salesforce", source=str(path))
    assert mapping is not None, doc.problems
    return Runtime(name="sf-direct", vendor="salesforce", role="internal", distributor_id=None,
                   channel_manager=None, connector=cast(Any, None), mapping=mapping)


def account_row(owner: str | None) -> AccountRow:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    return AccountRow(
        connection="sf-direct", external_id="001A", name="Acme", domain=None, country=None,
        duns=None, vat_id=None, channel_owner=owner, owner_user=None, partner_id=None,
        created_at=at, modified_at=at, deleted=False, deleted_at=None, vendor_modified_at=at,
        etag=None, changed_generation=1, updated_at=at,
    )


def owner_is_ours(runtime: Runtime, owner: str | None, *, ledger: Any = None,
                  writing: Any = None) -> bool:
    snapshot = build_snapshot(
        accounts=[account_row(owner)], opportunities=[], links={},
        runtimes={"sf-direct": runtime},
        ledgers={"sf-direct": {("account", "001A", "Channel_Owner__c"): ledger}}
        if ledger is not None else {},
        in_flight={"sf-direct": {("account", "001A", "Channel_Owner__c"): writing}}
        if writing is not None else None,
    )
    return snapshot.accounts[0].channel_owner_is_ours


def test_an_owner_we_wrote_is_ours_even_through_a_value_map() -> None:
    plain = salesforce_runtime()
    assert owner_is_ours(plain, "dist-n", ledger="dist-n")
    assert not owner_is_ours(plain, "dist-n", ledger="dist-b")  # a person changed it since
    assert not owner_is_ours(plain, "dist-n")  # never written by us: a person's choice
    assert not owner_is_ours(plain, None, ledger=None)
    labelled = salesforce_runtime({"Northwind Ltd": "dist-n"})
    # the ledger holds the vendor label we sent, the row the id it reads back as
    assert owner_is_ours(labelled, "dist-n", ledger="Northwind Ltd")
    assert not owner_is_ours(labelled, "dist-n", ledger="Someone Else")


def test_an_owner_written_but_never_booked_is_ours() -> None:
    """A crash between the vendor's answer and the booking leaves the item open and the
    ledger without it: the value in the CRM is still ours, not an owner set by hand."""
    plain = salesforce_runtime()
    assert owner_is_ours(plain, "dist-n", writing="dist-n")
    assert owner_is_ours(plain, "dist-n", ledger="direct", writing="dist-n")
    assert not owner_is_ours(plain, "dist-n", writing="dist-b")


def test_planning_over_an_unbooked_owner_write_is_not_held_back() -> None:
    spec = salesforce_runtime().mapping.writes(Entity.ACCOUNT)["channel_owner"]
    target = Target(audience=Audience("internal"), writes={"account": {"channel_owner": spec}})
    key = ("sf-direct", "account", "001A")

    def plan(in_flight: Any) -> tuple[list[Any], list[Any]]:
        return plan_writes(
            desired={key: {"channel_owner": "dist-b"}}, rules={}, targets={"sf-direct": target},
            current={key: {"Channel_Owner__c": "dist-n"}}, ledger={},
            secrets=Secrets.of([], []), in_flight=in_flight,
        )

    writes, held = plan({"sf-direct": {("account", "001A", "Channel_Owner__c"): "dist-n"}})
    assert [(w.field, w.value) for w in writes] == [("Channel_Owner__c", "dist-b")] and not held
    writes, held = plan(None)  # without the open item it looks like a person's value
    assert not writes and [h.why for h in held] == [
        "set by a person before Channel Sync wrote it (human_wins)"]


def opportunity_row(expires: date | None) -> OpportunityRow:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    return OpportunityRow(
        connection="sf-direct", external_id="006A", name="Deal", account_ref="001A",
        amount=None, currency=None, stage_raw=None, stage_category="open", close_date=None,
        created_at=at, modified_at=at, last_activity_at=at, owner_user=None,
        channel_owner=None, registered_by="dist-n", registered_at=at - timedelta(days=100),
        registration_expires_at=expires, registration_status="extended",
        registration_decision=None, reassign_to=None, deleted=False, deleted_at=None,
        vendor_modified_at=at, etag=None, changed_generation=1, updated_at=at,
    )


def test_an_expiry_date_counts_as_ours_only_when_we_wrote_it() -> None:
    """A later date a person typed in must not pass for an extension we carried out."""

    def ours(expires: date | None, ledger: Any = None, writing: Any = None) -> bool:
        key = ("opportunity", "006A", "Registration_Expires__c")
        snapshot = build_snapshot(
            accounts=[], opportunities=[opportunity_row(expires)], links={},
            runtimes={"sf-direct": salesforce_runtime()},
            ledgers={"sf-direct": {key: ledger}} if ledger is not None else {},
            in_flight={"sf-direct": {key: writing}} if writing is not None else None,
        )
        return snapshot.opportunities[0].registration_expiry_is_ours

    later = date(2027, 2, 15)
    assert ours(later, ledger="2027-02-15")
    assert ours(later, writing="2027-02-15")
    assert not ours(later)
    assert not ours(later, ledger="2027-01-31")
    assert ours(None)  # no date: nothing to doubt
