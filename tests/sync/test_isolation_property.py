"""Partner isolation, as a property over generated scenarios: zero leaks.

Scenarios hold several distributors (each on its own CRM, one through the manufacturer's
partner portal), direct reps, channel managers, amounts, customer ids, internal scores
and every kind of conflict. Whatever ``plan_writes`` sends to a distributor's connection
concerns that connection's own records only, and never names another distributor, an
internal user, an amount, a customer id or a score; reasons and owners are the partner
wording. The default mappings are used, extended so every connection could also write
the internal scorecard outputs: the visibility filter alone must keep those in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
from config.mapping import CompiledMapping
from config.mapping_compiler import compile_mapping
from config.yamlsource import parse_yaml
from connectors.base import Entity
from rules.engine import evaluate
from rules.model import (
    PARTNER_TEXT_OTHER,
    PARTNER_TEXT_YOURS,
    AccountFact,
    OpportunityFact,
    Policy,
    RecordKey,
    Snapshot,
)
from sync.plan import PlannedWrite, Target, plan_writes
from sync.visibility import ANOTHER_PARTY, PARTNER_OUTPUTS, Audience, Secrets

NOW = datetime(2026, 11, 26, 9, 15, tzinfo=UTC)
DAY = timedelta(days=1)
MAPPINGS = Path(config.__file__).parent / "mappings"
INTERNAL = {"sf-direct": "salesforce", "d365": "dynamics"}
PARTNER_VENDORS = ("hubspot", "pipedrive", "salesforce", "dynamics")
SCORE_OUTPUTS = {
    "scorecard_win_rate_registered": "Win_Rate__c",
    "scorecard_active_registrations": "Active_Registrations__c",
    "scorecard_verdict": "Partner_Verdict__c",
}
STATES = (None, "active", "expiring", "expired", "extended", "released", "won", "lost")


def compiled(vendor: str) -> CompiledMapping:
    """The default mapping for ``vendor``, with the scorecard outputs added to accounts."""
    path = MAPPINGS / f"{vendor}.yaml"
    doc = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    doc.data["entities"]["account"]["writes"].update(SCORE_OUTPUTS)
    mapping = compile_mapping(doc, doc.data, (), vendor, source=str(path))
    assert mapping is not None, doc.problems
    return mapping


MAPPING_OF = {vendor: compiled(vendor) for vendor in PARTNER_VENDORS}


# -- generated scenarios ------------------------------------------------------------------------

# Ids carry a hyphen and letters, so no id can hide inside a date, a status or a partner text.
LETTERS = "abcdefghijklmnopqrstuvwxyz"
distributor_ids = st.builds("{}-{}".format, st.sampled_from(("dist", "d", "p")),
                            st.text(LETTERS, min_size=2, max_size=7))
user_ids = st.builds("{}-{}".format, st.sampled_from(("u", "rep", "cm")),
                     st.text(LETTERS + "0123456789", min_size=1, max_size=6))


def unrelated(ids: list[str]) -> bool:
    """No id contains another, so a substring search finds exactly the id it looks for."""
    return all(a == b or a not in b for a in ids for b in ids) and not any(
        "direct" in i for i in ids)


@dataclass(frozen=True)
class Scenario:
    snapshot: Snapshot
    policy: Policy
    partners: Mapping[str, str]  # connection -> distributor id
    vendors: Mapping[str, str]  # connection -> vendor
    users: frozenset[str]
    current: Mapping[tuple[str, str, str], Mapping[str, Any]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    names = draw(st.lists(distributor_ids, min_size=3, max_size=5, unique=True))
    users = draw(st.lists(user_ids, min_size=2, max_size=6, unique=True))
    if not unrelated(names + users):
        names, users = [f"dist-{chr(97 + i)}x" for i in range(3)], ["u-rep1", "u-rep2"]
    # names[0] registers through the partner portal; the others have CRMs of their own
    partners = {f"crm-{name}": name for name in names[1:]}
    vendors = dict(INTERNAL)
    vendors.update({c: draw(st.sampled_from(PARTNER_VENDORS)) for c in partners})
    policy = Policy(
        registration_term=draw(st.integers(30, 120)) * DAY,
        inactivity_limit=draw(st.integers(10, 60)) * DAY,
        warning_window=draw(st.integers(0, 20)) * DAY,
        conflict_precedence=draw(st.sampled_from(
            ("earliest_registration", "channel_owner", "largest_amount"))),
        direct_after_release=draw(st.sampled_from((None, timedelta(0), 20 * DAY))),
        mid_sale_switch=draw(st.sampled_from(("keep_current", "new_owner"))),
        channel_managers={c: draw(st.sampled_from(users)) for c in INTERNAL},
    )
    accounts: list[AccountFact] = []
    opps: list[OpportunityFact] = []
    for n in range(draw(st.integers(1, 4))):
        customer = f"C{draw(st.integers(1000, 999_999)):06d}-{n}"
        holders = draw(st.lists(st.sampled_from(list(INTERNAL) + list(partners)), min_size=1,
                                max_size=4, unique=True))
        for connection in holders:
            partner = partners.get(connection)
            accounts.append(AccountFact(
                key=RecordKey(connection, "account", f"{customer}@{connection}"),
                customer_id=customer,
                role="distributor" if partner else "internal",
                distributor_id=partner,
                channel_owner=draw(st.none() | st.sampled_from(["direct", *names])),
                channel_owner_is_ours=draw(st.booleans()),
                owner_user=None if partner else draw(st.sampled_from(users)),
                partner_id=draw(st.none() | st.sampled_from(names)) if not partner else None,
            ))
            for i in range(draw(st.integers(0, 3))):
                opps.append(draw(deal(customer, connection, partner, names, users, i)))
    snapshot = Snapshot(accounts=accounts, opportunities=opps)
    current: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in all_records(Snapshot(accounts, opps)):
        key = (record.key.connection, record.key.entity, record.key.external_id)
        # as read: mostly blank (everything is written), sometimes owner values people set
        current[key] = {} if draw(st.booleans()) else {
            "channel_owner": draw(st.sampled_from(["direct", ANOTHER_PARTY, *names]))}
    return Scenario(snapshot, policy, partners, vendors, frozenset(users), current)


@st.composite
def deal(draw: st.DrawFn, customer: str, connection: str, partner: str | None,
         names: list[str], users: list[str], index: int) -> OpportunityFact:
    portal = names[0]
    registered = draw(st.booleans())
    if partner is None:  # internal: a direct deal, or a portal registration
        registrant = portal if registered else None
        party = registrant or "direct"
    else:
        registrant, party = (partner if registered else None), partner
    registered_at = NOW - draw(st.integers(0, 200)) * DAY if registrant else None
    decision = draw(st.sampled_from((None, None, "extend", "reassign", "release")))
    return OpportunityFact(
        key=RecordKey(connection, "opportunity", f"{customer}@{connection}#{index}"),
        customer_id=customer,
        role="distributor" if partner else "internal",
        distributor_id=partner,
        account_key=RecordKey(connection, "account", f"{customer}@{connection}"),
        party=party,
        amount=Decimal(draw(st.integers(10_001, 9_999_999))) / 100 + Decimal("0.01"),
        currency="EUR",
        stage_category=draw(st.sampled_from(("open", "open", "won", "lost"))),
        created_at=NOW - draw(st.integers(0, 300)) * DAY,
        modified_at=NOW - draw(st.integers(0, 60)) * DAY,
        last_activity_at=NOW - draw(st.integers(0, 90)) * DAY,
        owner_user=draw(st.sampled_from(users)),
        registered_by=registrant,
        registered_at=registered_at,
        registration_status=draw(st.sampled_from(STATES)) if registrant else None,
        registration_expires_at=(registered_at + draw(st.integers(-10, 200)) * DAY).date()
        if registered_at and draw(st.booleans()) else None,
        registration_decision=decision if registrant else None,
        reassign_to=draw(st.none() | st.sampled_from(names)) if decision == "reassign" else None,
    )


# -- planning as the sync layer does it -------------------------------------------------------

def targets(scenario: Scenario) -> dict[str, Target]:
    out = {}
    for connection, vendor in scenario.vendors.items():
        partner = scenario.partners.get(connection)
        audience = Audience("distributor", partner) if partner else Audience("internal")
        mapping = MAPPING_OF[vendor]
        out[connection] = Target(
            audience=audience,
            writes={e.value: dict(mapping.writes(e.value)) for e in Entity},
        )
    return out


def plan(scenario: Scenario) -> tuple[list[PlannedWrite], dict[tuple[str, str, str], Any]]:
    evaluation = evaluate(scenario.snapshot, scenario.policy, NOW)
    desired: dict[tuple[str, str, str], Any] = {}
    for key, values in evaluation.desired.items():
        outputs = dict(values)
        if key.entity == "account":  # the internal scores travel with every account
            outputs.update({
                "scorecard_win_rate_registered": Decimal("0.1234"),
                "scorecard_active_registrations": 4321,
                "scorecard_verdict": "paper partner (internal score 17.5)",
            })
        desired[(key.connection, key.entity, key.external_id)] = outputs
    secrets = Secrets.of(
        [*scenario.partners.values(),
         *(o.registered_by for o in scenario.snapshot.opportunities if o.registered_by),
         *(a.partner_id for a in scenario.snapshot.accounts if a.partner_id)],
        [a.owner_user for a in scenario.snapshot.accounts if a.role == "internal" and a.owner_user]
        + [o.owner_user for o in scenario.snapshot.opportunities
           if o.role == "internal" and o.owner_user],
    )
    writes, _held = plan_writes(
        desired=desired, rules={}, targets=targets(scenario), current=scenario.current,
        ledger={}, secrets=secrets,
    )
    return writes, desired


def secrets_of(scenario: Scenario, own: str) -> set[str]:
    """Everything a partner must never read, as text."""
    snapshot = scenario.snapshot
    names = {*scenario.partners.values(), *(o.registered_by or "" for o in
             snapshot.opportunities), *(a.partner_id or "" for a in snapshot.accounts)}
    names.discard(own)
    names.discard("")
    amounts: set[str] = set()
    for opp in snapshot.opportunities:
        if opp.amount is not None:
            amounts |= {str(opp.amount), f"{opp.amount:.2f}", format(opp.amount.normalize(), "f")}
    customers = {r.customer_id for r in all_records(snapshot) if r.customer_id}
    users = set(scenario.users) | set(scenario.policy.channel_managers.values())
    scores = {"0.1234", "4321", "internal score", "paper partner"}
    return names | amounts | customers | users | scores | {"direct"}


def all_records(snapshot: Snapshot) -> list[AccountFact | OpportunityFact]:
    return [*snapshot.accounts, *snapshot.opportunities]


def as_text(value: Any) -> str:
    return "" if value is None else str(value).lower()


def leaks(scenario: Scenario, writes: Iterable[PlannedWrite]) -> list[str]:
    found = []
    forbidden = {own: secrets_of(scenario, own) for own in scenario.partners.values()}
    records = {(r.key.connection, r.key.entity, r.key.external_id)
               for r in all_records(scenario.snapshot)}
    for write in writes:
        own = scenario.partners.get(write.connection)
        if own is None:
            continue
        where = f"{write.connection} {write.entity} {write.external_id} {write.field}"
        if (write.connection, write.entity, write.external_id) not in records:
            found.append(f"{where}: not a record of this connection")
        if write.output not in PARTNER_OUTPUTS:
            found.append(f"{where}: output {write.output} is internal")
        text = as_text(write.value)
        for secret in forbidden[own]:
            if secret.lower() in text:
                found.append(f"{where}: {write.value!r} names {secret!r}")
        if write.output == "channel_owner" and write.value not in (own, ANOTHER_PARTY, None):
            found.append(f"{where}: owner {write.value!r}")
        if write.output == "conflict_reason" and write.value not in (
                PARTNER_TEXT_OTHER, PARTNER_TEXT_YOURS, None):
            found.append(f"{where}: reason {write.value!r}")
    return found


# -- the property ------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_nothing_sent_to_a_distributor_leaks(scenario: Scenario) -> None:
    writes, desired = plan(scenario)
    assert leaks(scenario, writes) == []
    # not vacuous: the internal CRMs do get the scores and the named reasons
    internal_accounts = [k for k in desired if k[0] in INTERNAL and k[1] == "account"]
    scored = {(w.connection, w.external_id) for w in writes if w.output == "scorecard_verdict"}
    assert scored == {(k[0], k[2]) for k in internal_accounts}


def test_a_hand_made_conflict_reaches_the_partner_in_partner_words() -> None:
    """Two distributors and a direct rep on one customer: the leak checker sees writes."""
    later, earlier = NOW - 5 * DAY, NOW - 20 * DAY

    def registration(connection: str, dist: str, at: datetime) -> OpportunityFact:
        return OpportunityFact(
            key=RecordKey(connection, "opportunity", f"{dist}-deal"), customer_id="C000042",
            role="distributor", distributor_id=dist,
            account_key=RecordKey(connection, "account", "a"), party=dist,
            amount=Decimal("48210.55"), registered_by=dist, registered_at=at,
            last_activity_at=NOW - DAY, created_at=at, modified_at=at,
        )

    snapshot = Snapshot(
        accounts=[
            AccountFact(RecordKey("sf-direct", "account", "001"), "C000042", "internal", None,
                        owner_user="u-anna"),
            AccountFact(RecordKey("crm-dist-north", "account", "a"), "C000042", "distributor",
                        "dist-north"),
            AccountFact(RecordKey("crm-dist-bright", "account", "a"), "C000042", "distributor",
                        "dist-bright"),
        ],
        opportunities=[
            registration("crm-dist-north", "dist-north", earlier),
            registration("crm-dist-bright", "dist-bright", later),
            OpportunityFact(
                key=RecordKey("sf-direct", "opportunity", "006"), customer_id="C000042",
                role="internal", distributor_id=None,
                account_key=RecordKey("sf-direct", "account", "001"), party="direct",
                amount=Decimal("99000.10"), owner_user="u-anna", created_at=NOW - DAY,
            ),
        ],
    )
    scenario = Scenario(
        snapshot=snapshot,
        policy=Policy(channel_managers={"sf-direct": "cm-olga"}),
        partners={"crm-dist-north": "dist-north", "crm-dist-bright": "dist-bright"},
        vendors={"sf-direct": "salesforce", "d365": "dynamics",
                 "crm-dist-north": "hubspot", "crm-dist-bright": "pipedrive"},
        users=frozenset({"u-anna", "cm-olga"}),
        current={(r.key.connection, r.key.entity, r.key.external_id): {}
                 for r in all_records(snapshot)},
    )
    writes, _ = plan(scenario)
    to_partners = {(w.connection, w.field): w.value for w in writes
                   if w.connection in scenario.partners and w.entity == "opportunity"}
    assert to_partners[("crm-dist-north", "channel_conflict_reason")] == PARTNER_TEXT_YOURS
    assert to_partners[("crm-dist-bright", "Channel conflict reason")] == PARTNER_TEXT_OTHER
    assert to_partners[("crm-dist-bright", "Channel owner")] == ANOTHER_PARTY
    internal = {w.field: w.value for w in writes if w.external_id == "006"}
    assert "dist-north" in internal["Channel_Conflict_Reason__c"]  # internal text names it
    assert internal["Routed_To__c"] == "cm-olga"
    assert leaks(scenario, writes) == []
    # and the checker does catch a leak when one is planted
    planted = PlannedWrite("crm-dist-bright", "opportunity", "dist-bright-deal",
                           "Channel conflict reason", "held by dist-north", None,
                           "conflict_reason", "", "")
    where = "crm-dist-bright opportunity dist-bright-deal Channel conflict reason"
    assert leaks(scenario, [planted]) == [
        f"{where}: 'held by dist-north' names 'dist-north'",
        f"{where}: reason 'held by dist-north'",
    ]
