"""Incremental evaluation plans exactly what a full evaluation plans, after random changes.

A small scenario runs against the sandboxes. Each round people edit some records in the
CRMs (deal amounts; account names, some copied from another account so clusters merge
and split) and the clock moves on (registrations reach their warning window and expire),
then one cycle pulls. Inside it a full dry run (``evaluate_store`` with ``record=False``)
and the incremental evaluation run on the same store: their planned writes must be equal,
and the open findings the incremental run leaves must be the full run's findings. The
writes are pushed, so the next round starts from CRMs that show the policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import sync.incremental
from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.edits import delete_record, edit_record, move_deal
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sync.cycle import run_cycle
from sync.evaluate import Outcome, evaluate_store
from sync.findings import finding_rows
from sync.incremental import Engine, evaluate_incremental
from wiring import Wiring


@dataclass
class Lab:
    sandboxes: SandboxSet
    wiring: Wiring
    now: datetime
    outcomes: list[tuple[Outcome, Outcome]] = field(default_factory=list)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("incremental")
    world = generate(seed=11, customers=40)
    sandboxes = start_world(world, tls_dir=directory / "tls")
    try:
        wiring = Wiring(load_settings(write_config(sandboxes, directory)))
        try:
            assert world.now is not None
            yield Lab(sandboxes, wiring, world.now)
        finally:
            wiring.close()
    finally:
        sandboxes.stop()


def planned_set(outcome: Outcome) -> set[tuple[Any, ...]]:
    return {(w.connection, w.entity, w.external_id, w.field, repr(w.value))
            for w in outcome.planned}


def finding_view(key: str, kind: str, customer: Any, evidence: dict[str, Any]) -> tuple[Any, ...]:
    rest = {k: v for k, v in evidence.items() if k != "at"}  # the instant it was last seen
    return (key, kind, customer, repr(sorted(rest.items())))


def cycle(lab: Lab, now: datetime, engine: Engine, *, force_full: bool = False
          ) -> tuple[Outcome, Outcome]:
    store, runtimes = lab.wiring.store(), lab.wiring.runtimes()
    policy, settings = lab.wiring.policy(), lab.wiring.match_settings()
    pair: list[Outcome] = []

    def both(store_: Any, at: datetime, run_id: int) -> tuple[list[Any], dict[str, Any]]:
        full = evaluate_store(store_, runtimes, policy=policy, match_settings=settings, now=at,
                              record=False)
        inc = evaluate_incremental(store_, runtimes, policy=policy, match_settings=settings,
                                   now=at, run_id=run_id, engine=engine,
                                   full_every=timedelta(days=365), force_full=force_full)
        pair[:] = [full, inc]
        return inc.planned, inc.stats

    report = run_cycle(store=store, runtimes=runtimes, evaluate=both, now=lambda: now,
                       backoff=lab.wiring.backoff())
    assert report.ok, {n: c.error for n, c in report.connections.items()}
    return pair[0], pair[1]


def edit_randomly(lab: Lab, rng: random.Random, share: float) -> int:
    store = lab.wiring.store()
    accounts = [a for a in store.load_accounts()]
    deals = [o for o in store.load_opportunities()]
    edits = 0
    for a in rng.sample(accounts, max(1, int(len(accounts) * share))):
        other = rng.choice(accounts)
        name = other.name if rng.random() < 0.4 else f"{a.name or 'x'} {rng.choice('QXZ')}"
        edit_record(lab.sandboxes[a.connection], "account", a.external_id, name=name)
        edits += 1
    for o in rng.sample(deals, max(1, int(len(deals) * share))):
        edit_record(lab.sandboxes[o.connection], "opportunity", o.external_id,
                    amount=Decimal(rng.randrange(1000, 90000)))
        edits += 1
    movable = [o for o in deals if lab.sandboxes[o.connection].vendor in MOVABLE]
    for o in rng.sample(movable, 2):
        targets = [a for a in accounts if a.connection == o.connection
                   and a.external_id != o.account_ref]
        move_deal(lab.sandboxes[o.connection], o.external_id, rng.choice(targets).external_id)
        edits += 1
    records: list[Any] = [*accounts, *deals]
    deletable = [r for r in records if lab.sandboxes[r.connection].vendor in DELETABLE]
    for r in rng.sample(deletable, 1):
        delete_record(lab.sandboxes[r.connection], r.key.entity, r.external_id)
        edits += 1
    # a person's verdicts: two accounts of one customer are never the same, two of
    # different customers are
    links = store.customer_links()
    by_customer: dict[str, list[Any]] = {}
    for key, cid in links.items():
        by_customer.setdefault(cid, []).append(key)
    shared = [keys for keys in by_customer.values() if len(keys) > 1]
    if shared:
        pair = rng.choice(shared)[:2]
        store.record_match_decision(pair[0], pair[1], "never", "bench")
    first, second = rng.sample(sorted(links), 2)
    if links[first] != links[second]:
        store.record_match_decision(first, second, "same", "bench")
    return edits


MOVABLE = ("salesforce", "pipedrive")
DELETABLE = ("salesforce", "pipedrive", "dynamics")


def test_incremental_plans_and_finds_what_a_full_evaluation_does(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    warm = Engine()
    # a full evaluation runs without the match index in memory (it is rebuilt after)
    index_held: list[bool] = []
    full_run = sync.incremental.evaluate_store

    def watched(*args: Any, **kwargs: Any) -> Outcome:
        index_held.append(warm.index is not None)
        return full_run(*args, **kwargs)

    monkeypatch.setattr(sync.incremental, "evaluate_store", watched)
    store = lab.wiring.store()
    kinds = []
    for round_no in range(6):
        if round_no:
            assert edit_randomly(lab, rng, 0.05) > 0
        # round 1 builds the match index, round 2 updates it; round 4 runs in a "fresh
        # process" (no index in memory: it is rebuilt); round 5 back in the first one,
        # whose index missed round 4 and must be dropped
        # round 3 evaluates in full, rewriting only the deal references changed since the
        # last evaluation: the incremental rounds after it depend on them
        engine = Engine() if round_no == 4 else warm
        full, inc = cycle(lab, lab.now + timedelta(days=8 * round_no), engine,
                          force_full=round_no == 3)
        kinds.append(inc.stats["evaluation"])
        assert planned_set(inc) == planned_set(full), f"round {round_no}"
        expected = {finding_view(r.key, r.kind, r.customer_id, r.evidence)
                    for r in finding_rows(full.evaluation.findings)}
        stored = {finding_view(f.key, f.kind, f.customer_id, f.evidence)
                  for f in store.open_findings()}
        assert stored == expected, f"round {round_no}"
        links = {(k.connection, k.external_id): cid
                 for k, cid in store.customer_links().items()}
        assert links == {k: link.customer_id for k, link in full.match.links.items()}
        if engine.index is not None:  # every stored link is the index's, method and score too
            assert store.account_links() == {
                k: (link.customer_id, link.method, float(link.score))
                for k, link in engine.index.links.items()}, f"round {round_no}"
        # the review queue, though an incremental cycle replaces only its re-matched part
        queue = {(r.a.connection, r.a.external_id, r.b.connection, r.b.external_id,
                  round(r.score, 3)) for r in store.review_items()}
        assert queue == {(*sorted((i.a, i.b))[0], *sorted((i.a, i.b))[1], round(i.score, 3))
                         for i in full.match.review}, f"round {round_no}"
        # the account each deal had when last evaluated is the account it has now
        deals = store.load_opportunities()
        assert store.evaluated_refs([(o.connection, o.external_id) for o in deals]) == {
            (o.connection, o.external_id): o.account_ref for o in deals}, f"round {round_no}"
    assert kinds == ["full", "incremental", "incremental", "full", "incremental", "incremental"]
    assert index_held == [False, False]  # round 3's warm engine had built one in round 1
