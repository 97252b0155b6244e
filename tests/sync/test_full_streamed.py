"""The full evaluation streams the store a batch of customers at a time; the verdicts and
the writes must not depend on where the batches are cut, on the number of processes, or
on the database, and must equal what one snapshot of every record gives.

A scenario runs one cycle against the sandboxes (so the store has a ledger), then people
change records in the CRMs and the store pulls them without evaluating; a few writes are
queued and left open. Every comparison is made on that store, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from rules.engine import evaluate
from rules.scorecards import compute_scorecards, scorecard_desired
from sandbox.edits import delete_record, edit_record
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sync.batches import targets_for
from sync.cycle import EvaluationStopped, run_cycle
from sync.evaluate import Outcome, evaluate_store, secrets_for
from sync.findings import rules_by_record, stored_findings
from sync.plan import plan_writes
from sync.scale import account_features
from sync.snapshot import build_snapshot
from tests.reference import match_customers
from wiring import Wiring


@dataclass
class Lab:
    sandboxes: SandboxSet
    wiring: Wiring
    now: datetime


@pytest.fixture
def lab(migrated_store_url: str, tmp_path: Path) -> Iterator[Lab]:
    world = generate(seed=13, customers=30)
    sandboxes = start_world(world, tls_dir=tmp_path / "tls")
    try:
        wiring = Wiring(load_settings(write_config(sandboxes, tmp_path,
                                                   store_url=migrated_store_url)))
        try:
            now = world.now
            assert now is not None
            report = one_cycle(wiring, trigger="test: first")
            assert report.ok
            store = wiring.store()
            assert store.has_written()
            # people change deals and accounts; the store pulls them, nothing evaluates
            for o in store.load_opportunities()[:12:3]:
                edit_record(sandboxes[o.connection], "opportunity", o.external_id,
                            amount=Decimal(4321))
            for a in store.load_accounts()[1:20:6]:
                edit_record(sandboxes[a.connection], "account", a.external_id,
                            name=f"{a.name} Renamed")
            # an account with deals goes: its stored link stays until an evaluation drops it
            with_deals = {(o.connection, o.account_ref) for o in store.load_opportunities()}
            gone = next(a for a in store.load_accounts()
                        if sandboxes[a.connection].vendor == "pipedrive"
                        and (a.connection, a.external_id) in with_deals)
            delete_record(sandboxes[gone.connection], "account", gone.external_id)
            run_cycle(store=store, runtimes=wiring.runtimes(), evaluate=_nothing,
                      now=lambda: now, backoff=wiring.backoff(), push=False,
                      trigger="test: pull only")
            yield Lab(sandboxes, wiring, now + timedelta(days=20))
        finally:
            wiring.close()
    finally:
        sandboxes.stop()


def _nothing(_store: Any, _at: datetime, _run_id: int) -> tuple[list[Any], dict[str, Any]]:
    return [], {}


def dry_run(lab: Lab, **options: Any) -> Outcome:
    w = lab.wiring
    return evaluate_store(w.store(), w.runtimes(), policy=w.policy(),
                          match_settings=w.match_settings(), now=lab.now, record=False,
                          scorecards=w.scorecards(), **options)


def view(outcome: Outcome) -> dict[str, Any]:
    return {
        "planned": sorted((w.connection, w.entity, w.external_id, w.field, repr(w.value),
                           w.rule, w.reason) for w in outcome.planned),
        "held": sorted(map(repr, outcome.held)),
        "findings": sorted(map(repr, outcome.evaluation.findings)),
        "thresholds": outcome.evaluation.next_thresholds,
        "stats": outcome.stats,
    }


def test_batches_processes_and_one_snapshot_agree(lab: Lab, store_backend: str) -> None:
    whole = dry_run(lab, batch=1_000_000, workers=1)
    assert whole.planned and whole.evaluation.findings and whole.evaluation.next_thresholds
    assert view(dry_run(lab, batch=2, workers=1)) == view(whole)
    if store_backend == "sqlite":  # a second process reads a SQLite file
        assert view(dry_run(lab, batch=3, workers=2)) == view(whole)

    # every record in one snapshot, planned at once: the path before streaming
    w = lab.wiring
    store, runtimes = w.store(), w.runtimes()
    by_name = {rt.name: rt for rt in runtimes}
    accounts, opportunities = store.load_accounts(), store.load_opportunities()
    match = match_customers(store, accounts, w.match_settings())
    # a deal whose account went still has the account's stored link: the dry run must
    # see it as a deal of no customer all the same
    orphans = [o for o in opportunities if (o.connection, o.account_ref) not in match.links]
    assert orphans and not {o.key for o in orphans} <= {
        o.key for o in store.unmatched_opportunities()}
    ledgers = {rt.name: store.ledger(rt.name) for rt in runtimes}
    writing = store.open_values(list(by_name))
    snapshot = build_snapshot(
        accounts=accounts, opportunities=opportunities,
        links={k: link.customer_id for k, link in match.links.items()}, runtimes=by_name,
        ledgers=ledgers, in_flight=writing)
    normal = evaluate(snapshot, w.policy(), lab.now)
    assert sorted(map(repr, normal.findings)) == view(whole)["findings"]
    desired = {(k.connection, k.entity, k.external_id): dict(v)
               for k, v in normal.desired.items()}
    report = compute_scorecards(snapshot, w.policy(), lab.now, w.scorecards(),
                                findings=stored_findings(store, normal.findings))
    for key, values in scorecard_desired(snapshot.accounts, report).items():
        desired.setdefault((key.connection, key.entity, key.external_id), {}).update(values)
    current = {}
    for (connection, entity, external_id) in desired:
        found = store.current_values(connection, entity, [external_id])
        if external_id in found:
            current[(connection, entity, external_id)] = found[external_id][1]
    rules = rules_by_record(normal.findings)
    planned, held = plan_writes(desired=desired, rules=rules, targets=targets_for(runtimes),
                                current=current, ledger=ledgers,
                                secrets=secrets_for(store, runtimes), in_flight=writing)
    assert sorted((p.connection, p.entity, p.external_id, p.field, repr(p.value))
                  for p in planned) == sorted(
        (p.connection, p.entity, p.external_id, p.field, repr(p.value))
        for p in whole.planned)
    assert sorted(map(repr, held)) == view(whole)["held"]


def test_a_recorded_run_stores_what_the_dry_run_planned(lab: Lab) -> None:
    planned = dry_run(lab, batch=1_000_000)
    w = lab.wiring
    store = w.store()
    before = {(i.connection, i.entity, i.external_id, i.field)
              for s in ("pending", "failed") for i in store.outbox_items(state=s)}
    recorded = evaluate_store(store, w.runtimes(), policy=w.policy(),
                              match_settings=w.match_settings(), now=lab.now, record=True,
                              scorecards=w.scorecards(), batch=2)
    assert view(recorded)["planned"] == view(planned)["planned"]
    queued = {(i.connection, i.entity, i.external_id, i.field): i.value
              for s in ("pending", "failed") for i in store.outbox_items(state=s)}
    assert set(queued) == before | {(p.connection, p.entity, p.external_id, p.field)
                                    for p in recorded.planned}
    assert recorded.stats["queued"] == len(recorded.planned) > 0
    # the findings left open are exactly those found; the others were resolved
    open_keys = store.open_finding_keys_all()
    found = {f"{f.kind}:{f.subject.connection}:{f.subject.entity}:{f.subject.external_id}"
             for f in recorded.evaluation.findings}
    assert open_keys == found
    # every account is linked, and every customer named
    links = store.customer_links()
    assert {(k.connection, k.external_id) for k in links} == {
        (a.connection, a.external_id) for a in store.load_accounts()}
    assert set(links.values()) <= set(store.customers())
    # nothing changed since: a second recorded run queues nothing new, resolves nothing
    again = evaluate_store(store, w.runtimes(), policy=w.policy(),
                           match_settings=w.match_settings(), now=lab.now, record=True,
                           scorecards=w.scorecards(), batch=5)
    assert again.stats["findings_opened"] == again.stats["findings_resolved"] == 0
    assert store.open_finding_keys_all() == found


class StopAfter(threading.Event):
    """A stop event that turns set at its ``n``-th look (the evaluation looks once a
    batch)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n or super().is_set()


def test_a_stop_ends_the_evaluation_between_batches_keeping_what_it_recorded(lab: Lab) -> None:
    w = lab.wiring
    store = w.store()
    seen_before = {f.key: f.last_seen for f in store.findings()}
    stop = StopAfter(3)  # two batches recorded, the third not begun
    with pytest.raises(EvaluationStopped):
        evaluate_store(store, w.runtimes(), policy=w.policy(),
                       match_settings=w.match_settings(), now=lab.now, record=True,
                       batch=2, stop=stop)
    assert stop.looks == 3
    touched = {f.key for f in store.findings() if f.last_seen != seen_before.get(f.key)}
    assert touched and len(touched) < len(seen_before)  # some findings, not all of them

    # in a cycle: the run ends as stopped, and no push begins
    stopped = threading.Event()

    def stop_midway(_store: Any, _at: datetime, _run_id: int) -> tuple[list[Any], dict[str, Any]]:
        stopped.set()
        raise EvaluationStopped

    queued_before = store.outbox_counts()
    report = run_cycle(store=store, runtimes=w.runtimes(), evaluate=stop_midway,
                       now=lambda: lab.now, backoff=w.backoff(), stop=stopped,
                       trigger="test: stop")
    assert report.stopped and report.stats == {"evaluation": "stopped"}
    assert store.recent_runs()[0].status == "stopped"
    assert all(r.push is None for r in report.connections.values())  # no push began
    assert store.outbox_counts() == queued_before


def test_a_recording_run_stores_the_keys_it_made_a_dry_run_none(
        lab: Lab, store_backend: str) -> None:
    """Accounts changed since their keys were stored (renamed, or our write-back echoing)
    are normalised again by each full evaluation until a recording one stores them."""
    w = lab.wiring
    store, connections = w.store(), [rt.name for rt in w.runtimes()]
    workers = 2 if store_backend == "sqlite" else 1  # the second process makes half

    def made() -> set[tuple[str, str]]:
        features = account_features(store, connections)
        return {features.keys[position] for position in features.made[2]}

    renamed = {(a.connection, a.external_id) for a in store.load_accounts()
               if not a.deleted and (a.name or "").endswith(" Renamed")}
    changed = made()
    assert renamed and renamed <= changed
    dry_run(lab, workers=workers)
    assert made() == changed
    evaluate_store(store, w.runtimes(), policy=w.policy(), match_settings=w.match_settings(),
                   now=lab.now, record=True, workers=workers)
    assert made() == set()
