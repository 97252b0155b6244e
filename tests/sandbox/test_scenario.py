"""The scenario generator: deterministic, realistic overlaps, and ground truth that holds."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from sandbox.cli import _native_entries, serve_command
from sandbox.launch import LaunchError, start_native, start_world
from sandbox.layout import (
    CHANNEL_MANAGER,
    INACTIVITY_LIMIT_DAYS,
    REGISTRATION_TERM_DAYS,
    WARNING_WINDOW_DAYS,
)
from sandbox.scenario import generate, load_fixture_world
from sandbox.world import SeedDeal, World
from sandbox.worldio import FixtureError, world_from_dict, world_to_dict

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> World:
    return generate(seed=7, customers=400, now=NOW)


def _deals(world: World) -> dict[tuple[str, str], SeedDeal]:
    return {(crm.connection, d.key): d for crm in world.crms for d in crm.deals}


def _account_of_deal(world: World) -> dict[tuple[str, str], tuple[str, str]]:
    return {(crm.connection, d.key): (crm.connection, d.account_key)
            for crm in world.crms for d in crm.deals}


def _state(deal: SeedDeal, now: datetime) -> str:
    """The registration state the policy defaults give; an independent re-derivation."""
    if deal.stage in ("won", "lost"):
        return deal.stage
    assert deal.registered_at is not None and deal.last_activity_at is not None
    ends = min(deal.registered_at + timedelta(days=REGISTRATION_TERM_DAYS),
               deal.last_activity_at + timedelta(days=INACTIVITY_LIMIT_DAYS))
    if ends <= now:
        return "expired"
    return "expiring" if ends - now <= timedelta(days=WARNING_WINDOW_DAYS) else "active"


def test_same_seed_gives_the_same_world_and_another_seed_does_not() -> None:
    first = world_to_dict(generate(seed=11, customers=150, now=NOW))
    again = world_to_dict(generate(seed=11, customers=150, now=NOW))
    other = world_to_dict(generate(seed=12, customers=150, now=NOW))
    assert first == again
    assert first["crms"] != other["crms"]


def test_layout_has_the_five_connections(world: World) -> None:
    layout = {(c.connection, c.vendor, c.role, c.distributor_id) for c in world.crms}
    assert layout == {
        ("sf-direct", "salesforce", "internal", None),
        ("d365-emea", "dynamics", "internal", None),
        ("hs-northwind", "hubspot", "distributor", "dist-northwind"),
        ("hs-brightline", "hubspot", "distributor", "dist-brightline"),
        ("pd-alpine", "pipedrive", "distributor", "dist-alpine"),
    }
    sf = next(c for c in world.crms if c.connection == "sf-direct")
    partners = {a.partner_id for a in sf.accounts if a.partner_id}
    assert partners == {"dist-northwind", "dist-brightline", "dist-alpine", "dist-portal"}
    assert any(d.registered_by == "dist-portal" for d in sf.deals)
    assert world.now == NOW


def test_every_record_is_consistent_with_the_ground_truth(world: World) -> None:
    accounts = {(crm.connection, a.key) for crm in world.crms for a in crm.accounts}
    assert set(world.truth.customer_of) == accounts
    for crm in world.crms:
        keys = [a.key for a in crm.accounts] + [d.key for d in crm.deals]
        assert len(keys) == len(set(keys)), crm.connection
        own = {a.key for a in crm.accounts}
        users = {u.key for u in crm.users}
        for deal in crm.deals:
            assert deal.account_key in own
            assert deal.owner_user in users
            assert deal.modified_at >= deal.created_at
            assert deal.amount > 0
        for account in crm.accounts:
            assert account.owner_user is None or account.owner_user in users


def test_overlaps_are_realistic(world: World) -> None:
    by_customer: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, customer in world.truth.customer_of.items():
        by_customer[customer].append(key)
    names = {(c.connection, a.key): a for c in world.crms for a in c.accounts}
    multi = [keys for keys in by_customer.values() if len({k[0] for k in keys}) >= 2]
    assert len(multi) >= 60
    assert any(len({k[0] for k in keys}) >= 3 for keys in by_customer.values())
    assert any(len({names[k].name for k in keys}) > 1 for keys in multi)
    websites = [a.website or "" for a in names.values()]
    assert any(w in ("gmail.com", "hotmail.com", "gmx.de", "web.de", "outlook.com",
                     "yahoo.com", "icloud.com", "hotmail.co.uk", "yahoo.fr", "gmx.net")
               for w in websites)
    assert any(w.startswith("https://www.") for w in websites)
    assert any(".co.uk" in w for w in websites)
    assert sum(a.website is None for a in names.values()) > 50
    assert any(a.duns for a in names.values()) and any(a.vat_id for a in names.values())
    assert any(not a.name.isascii() for a in names.values())


def test_look_alikes_and_namesakes_abroad_are_different_customers() -> None:
    world = generate(seed=7, customers=3000, now=NOW)
    first_word: dict[tuple[str, str], set[str]] = defaultdict(set)
    for crm in world.crms:
        for a in crm.accounts:
            if a.country and not a.partner_id:
                word = a.name.split()[0].lower()
                first_word[(a.country, word)].add(world.truth.customer_of[(crm.connection, a.key)])
    assert any(len(customers) > 1 for customers in first_word.values())


def test_registration_states_follow_the_policy_defaults(world: World) -> None:
    deals = _deals(world)
    states = world.truth.registrations
    assert {"active", "expiring", "expired", "won", "lost"} <= set(states.values())
    for key, deal in deals.items():
        if deal.registered_by:
            assert states[key] == _state(deal, NOW), key
        else:
            assert key not in states
    decisions = {d.registration_decision for d in deals.values() if d.registration_decision}
    assert decisions == {"extend", "reassign", "release"}
    for deal in deals.values():
        if deal.registration_decision:
            assert states[_key_of(world, deal)] == "expired"
        if deal.registration_decision == "reassign":
            assert deal.reassign_to and deal.reassign_to != deal.registered_by


def _key_of(world: World, deal: SeedDeal) -> tuple[str, str]:
    return next((c.connection, d.key) for c in world.crms for d in c.deals if d is deal)


def test_planted_conflicts_hold(world: World) -> None:
    deals, account_of = _deals(world), _account_of_deal(world)
    internal = {c.connection for c in world.crms if c.role == "internal"}
    kinds: dict[str, int] = defaultdict(int)
    for conflict in world.truth.conflicts:
        kinds[str(conflict["kind"])] += 1
        records = [tuple(r) for r in conflict["records"]]  # type: ignore[attr-defined]
        keys = [(c, k) for c, entity, k in records]
        assert all(entity == "opportunity" for _, entity, _ in records)
        for key in keys:
            assert world.truth.customer_of[account_of[key]] == conflict["customer"]
        first = deals[keys[0]]
        assert first.registered_by == conflict["distributor"]
        if conflict["kind"] in ("direct_vs_channel", "routing"):
            direct = deals[keys[1]]
            assert keys[1][0] in internal and direct.registered_by is None
            assert direct.stage == "open"
            if conflict["reason"] == "registered":
                assert world.truth.registrations[keys[0]] in ("active", "expiring")
        if conflict["kind"] == "routing":
            assert NOW - deals[keys[1]].created_at < timedelta(days=3)
            assert conflict["routed_to"] == CHANNEL_MANAGER[keys[1][0]]
        if conflict["kind"] == "channel_vs_channel":
            later = deals[keys[1]]
            assert later.registered_by in conflict["flagged"]  # type: ignore[operator]
            assert first.registered_at < later.registered_at  # type: ignore[operator]
            assert {world.truth.registrations[k] for k in keys} <= {"active", "expiring"}
        if conflict["kind"] == "unregistered_on_other_customer":
            intruder = deals[keys[1]]
            assert intruder.registered_by is None and intruder.stage == "open"
            assert keys[1][0] not in internal
    assert set(kinds) == {"direct_vs_channel", "channel_vs_channel",
                          "unregistered_on_other_customer", "routing"}
    assert all(n >= 2 for n in kinds.values())


def test_background_customers_have_no_unplanted_conflict(world: World) -> None:
    deals, account_of = _deals(world), _account_of_deal(world)
    internal = {c.connection for c in world.crms if c.role == "internal"}
    distributor_of = {c.connection: c.distributor_id for c in world.crms}
    planted = {c["customer"] for c in world.truth.conflicts}
    for key, deal in deals.items():
        customer = world.truth.customer_of[account_of[key]]
        if customer in planted or deal.stage != "open":
            continue
        others = [(k, d) for k, d in deals.items()
                  if world.truth.customer_of[account_of[k]] == customer and k != key]
        live = {d.registered_by for k, d in others if d.registered_by
                and world.truth.registrations[k] in ("active", "expiring")}
        if key[0] in internal and deal.registered_by is None:
            assert not live, f"direct deal {key} on a registered customer"
        party = deal.registered_by or distributor_of[key[0]]
        assert not (live - {party}), f"{key} competes with {live}"


def test_every_distributor_has_closed_unregistered_deals_in_its_own_crm() -> None:
    """The scorecards compare registered and unregistered win rates: the default scenario
    gives each distributor CRM closed deals it never registered, won and lost."""
    world = generate(seed=7, customers=400, now=NOW)
    outcomes: set[str] = set()
    for crm in world.crms:
        if crm.role != "distributor":
            continue
        closed = [d for d in crm.deals if d.registered_at is None and d.stage != "open"]
        assert closed, crm.connection
        outcomes |= {d.stage for d in closed}
        for deal in closed:
            assert deal.last_activity_at is not None
            assert deal.created_at <= deal.last_activity_at < NOW - timedelta(days=30)
            assert deal.created_at.date() <= deal.close_date <= deal.last_activity_at.date()
    assert outcomes == {"won", "lost"}


def test_distributors_have_a_year_of_history_and_one_wins_little_of_it() -> None:
    """Scorecard verdicts need 12 months since a distributor's first registration."""
    world = generate(seed=7, customers=400, now=NOW)
    old: dict[str, list[str]] = {}
    for crm in world.crms:
        for deal in crm.deals:
            if deal.registered_by and deal.registered_at and \
                    deal.registered_at < NOW - timedelta(days=365):
                assert deal.stage in ("won", "lost")
                assert world.truth.registrations[(crm.connection, deal.key)] == deal.stage
                old.setdefault(deal.registered_by, []).append(deal.stage)
    assert set(old) >= {"dist-northwind", "dist-brightline", "dist-alpine"}
    rates = {dist: stages.count("won") / len(stages) for dist, stages in old.items()}
    assert rates["dist-northwind"] < 0.15 < min(r for d, r in rates.items()
                                                if d != "dist-northwind")


def test_world_round_trips_through_a_fixture_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world_to_dict(world)))
    loaded = load_fixture_world(path)
    assert world_to_dict(loaded) == world_to_dict(world)


def test_yaml_fixture_errors_name_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "crms:\n  - connection: hs-x\n    vendor: hubspot\n    role: distributor\n"
        "    accounts: [{key: A1, name: Acme, website: null, country: DE, colour: red}]\n")
    with pytest.raises(FixtureError, match=r"crms\[0\] \(hs-x\): accounts\[0\].*colour"):
        load_fixture_world(path)
    with pytest.raises(FixtureError, match="created_at"):
        world_from_dict({"crms": [{"connection": "x", "vendor": "hubspot", "role": "internal",
                                   "accounts": [{"key": "A", "name": "n", "website": None,
                                                 "country": None, "created_at": "yesterday"}]}]})


def test_start_world_serves_every_crm_and_stops(tmp_path: Path) -> None:
    world = generate(seed=3, customers=60, now=NOW)
    with start_world(world, tls_dir=tmp_path / "tls") as running:
        described = json.loads(json.dumps(running.describe()))
        assert {s["connection"] for s in described["sandboxes"]} == {
            c.connection for c in world.crms}
        for box in running:
            verify: str | bool = str(box.ca_file) if box.ca_file else True
            answer = requests.get(f"{box.base_url}/__sandbox/requests", verify=verify,
                                  timeout=10)
            assert answer.status_code == 200
            assert box.base_url.startswith("https://" if box.vendor in (
                "salesforce", "dynamics") else "http://")
    assert not running.sandboxes


def test_start_world_rejects_an_unknown_vendor(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="zoho"):
        start_world(generate(seed=3, customers=40, now=NOW), vendors=["zoho"], tls_dir=tmp_path)


def test_serve_command_prints_json_and_stops(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fixture = tmp_path / "world.json"
    fixture.write_text(json.dumps(world_to_dict(generate(seed=5, customers=40, now=NOW))))
    stop = threading.Event()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(serve_command(
        ["hubspot", "pipedrive"], 1, 40, fixture, True, tls_dir=tmp_path / "tls",
        stop_event=stop)))
    runner.start()
    printed, deadline = "", time.monotonic() + 30
    while time.monotonic() < deadline:
        printed += capsys.readouterr().out
        if printed.rstrip().endswith("}"):
            break
        time.sleep(0.05)
    stop.set()
    runner.join(timeout=30)
    assert codes == [0]
    # structlog's default logger also prints to stdout; main.py sends logs to stderr
    described = json.loads(printed[printed.index("{\n"):])
    assert {s["connection"] for s in described["sandboxes"]} == {
        "hs-northwind", "hs-brightline", "pd-alpine"}
    assert all(s["base_url"].startswith("http://127.0.0.1:") for s in described["sandboxes"])
    assert described["sandboxes"][0]["credentials"]


def test_serve_command_reports_a_bad_fixture(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert serve_command(None, 1, 40, missing, False, tls_dir=tmp_path) == 2
    assert "nope.yaml" in capsys.readouterr().out


def test_serve_command_takes_a_native_fixture(tmp_path: Path) -> None:
    fixture = tmp_path / "native.yaml"
    fixture.write_text(
        "sandboxes:\n"
        "  - connection: pd-test\n    vendor: pipedrive\n    distributor_id: dist-test\n"
        "    native:\n      organizations: [{id: 10, name: Acme GmbH, website: acme.de}]\n")
    entries = _native_entries(fixture)
    assert entries is not None
    with start_native(entries, tls_dir=tmp_path / "tls") as running:
        box = running["pd-test"]
        token = box.credentials()["api_token"]
        answer = requests.get(f"{box.base_url}/api/v2/organizations",
                              headers={"x-api-token": token}, timeout=10)
        assert [o["name"] for o in answer.json()["data"]] == ["Acme GmbH"]
