"""The lean scale path builds the same facts and reaches the same verdicts as the normal one.

A scenario is written into a SQLite store; the normal path (load every row, match,
``build_snapshot``, ``evaluate``) and :mod:`sync.scale` (matching columns only, then the
records streamed back per customer) must agree on links, facts, desired values and
findings, in one process and in two.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from bench.scale_data import fill_store
from rules.engine import evaluate
from rules.matching import MatchSettings
from rules.model import Policy, Snapshot
from sandbox.scenario import generate
from state.store import Store
from sync.cycle import Runtime
from sync.scale import Batch, evaluate_at_scale, shares
from sync.snapshot import build_snapshot
from tests.reference import match_customers, stream_groups


class NoWrites:
    """A mapping without write-back fields (the ledger is empty in these stores)."""

    def writes(self, entity: Any) -> Mapping[str, Any]:
        return {}

    def entity(self, entity: Any) -> Any:
        raise NotImplementedError


def runtimes_for(world: Any) -> list[Runtime]:
    return [Runtime(name=c.connection, vendor=c.vendor, role=c.role,
                    distributor_id=c.distributor_id, channel_manager=None,
                    connector=cast(Any, None), mapping=NoWrites())
            for c in world.crms]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Any]]:
    path = tmp_path_factory.mktemp("scale") / "store.db"
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()
    world = generate(seed=3, customers=60)
    fill_store(store, world, deal_copies=1)
    try:
        yield store, world
    finally:
        store.close()


def _normal_path(store: Store, world: Any, policy: Policy, settings: MatchSettings
                 ) -> tuple[datetime, Any, dict[Any, str], Snapshot, Any]:
    """Every row loaded, matched and evaluated at once: what the lean path must equal."""
    assert world.now is not None
    now = world.now + timedelta(hours=1)
    accounts, opportunities = store.load_accounts(), store.load_opportunities()
    match = match_customers(store, accounts, settings)
    links = {key: link.customer_id for key, link in match.links.items()}
    snapshot = build_snapshot(accounts=accounts, opportunities=opportunities, links=links,
                              runtimes={rt.name: rt for rt in runtimes_for(world)}, ledgers={})
    return now, match, links, snapshot, evaluate(snapshot, policy, now)


def test_the_lean_path_agrees_with_the_normal_one(filled: tuple[Store, Any]) -> None:
    store, world = filled
    runtimes = runtimes_for(world)
    policy, settings = Policy(), MatchSettings()
    now, _match, links, snapshot, normal = _normal_path(store, world, policy, settings)
    assert all(o.customer_id is not None for o in snapshot.opportunities)

    streamed = list(stream_groups(store, runtimes, dict(links)))
    assert sorted(f.key for _, accs, _ in streamed for f in accs) == sorted(
        f.key for f in snapshot.accounts)
    facts: dict[Any, Any] = {f.key: f for _, accs, _ in streamed for f in accs}
    facts.update((f.key, f) for _, _, opps in streamed for f in opps)
    expected: dict[Any, Any] = {f.key: f for f in snapshot.accounts}
    expected.update((f.key, f) for f in snapshot.opportunities)
    assert facts == expected

    run = evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now)
    assert run.match is not None and run.evaluation is not None
    lean = run.evaluation
    assert {k: link.customer_id for k, link in run.match.links.items()} == links
    assert {k: dict(v) for k, v in lean.desired.items()} == {
        k: dict(v) for k, v in normal.desired.items()}
    assert sorted(map(repr, lean.findings)) == sorted(map(repr, normal.findings))
    assert lean.next_thresholds == normal.next_thresholds
    assert len(normal.findings) > 0 and len(normal.desired) == len(facts)

    # consumed batch by batch, the same verdicts arrive in pieces
    pieces: list[Any] = []
    streamed_run = evaluate_at_scale(store, runtimes, policy=policy, settings=settings,
                                     now=now, consume=pieces.append, batch=9)
    assert streamed_run.match is None and streamed_run.evaluation is None
    assert len(pieces) > 3
    assert sorted(repr(f) for p in pieces for f in p.evaluation.findings) == sorted(
        map(repr, normal.findings))
    assert sum(len(p.evaluation.desired) for p in pieces) == len(normal.desired)
    # each batch carries the facts it was evaluated from
    assert sorted(f.key for p in pieces for f in p.accounts) == sorted(
        f.key for f in snapshot.accounts)


class Collect:
    """A picklable ``consume``: what the rules concluded, as plain values."""

    def __init__(self) -> None:
        self.findings: list[str] = []
        self.desired: dict[Any, dict[str, Any]] = {}
        self.thresholds: dict[str, Any] = {}
        self.batches = 0

    def __call__(self, batch: Batch) -> None:
        evaluation = batch.evaluation
        self.findings.extend(map(repr, evaluation.findings))
        self.desired.update((k, dict(v)) for k, v in evaluation.desired.items())
        self.thresholds.update(evaluation.next_thresholds)
        self.batches += 1


def test_two_processes_reach_the_verdicts_of_the_normal_path(filled: tuple[Store, Any]) -> None:
    store, world = filled
    runtimes = runtimes_for(world)
    policy, settings = Policy(), MatchSettings()
    now, match, links, _snapshot, normal = _normal_path(store, world, policy, settings)

    run = evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now,
                            consume=Collect(), batch=5, workers=2)
    assert len(run.consumers) == 2 and len(run.worker_usage) == 1
    # matched from features and close names found in two processes: the same clusters
    assert (run.accounts, run.customers) == (len(links), len(set(links.values())))
    assert run.review_items == len(match.review)
    parts: list[Collect] = run.consumers
    assert all(part.batches > 1 and part.desired for part in parts)  # both did a share
    assert not set(parts[0].desired) & set(parts[1].desired)  # and no record twice
    assert sorted(parts[0].findings + parts[1].findings) == sorted(map(repr, normal.findings))
    assert {**parts[0].desired, **parts[1].desired} == {
        k: dict(v) for k, v in normal.desired.items()}
    assert {**parts[0].thresholds, **parts[1].thresholds} == normal.next_thresholds
    cpu, peak, wall = run.worker_usage[0]
    assert cpu > 0 and peak > 0 and wall > 0


def test_shares_keep_every_customer_once_in_order() -> None:
    customers = [(f"cust-{i}", [("crm", str(i))]) for i in range(1000)]
    for parts, first in ((1, 1.0), (2, 1.0), (2, 0.9), (3, 0.5)):
        cut = shares(customers, parts, first=first)
        assert len(cut) == parts and [c for part in cut for c in part] == customers
        if parts > 1:  # the first is `first` times as large as each of the others
            assert abs(len(cut[0]) - first * len(cut[1])) <= 1
    assert shares([], 2) == [[], []]


def test_workers_need_a_consumer(filled: tuple[Store, Any]) -> None:
    store, world = filled
    with pytest.raises(ValueError, match="consume"):
        evaluate_at_scale(store, runtimes_for(world), policy=Policy(),
                          settings=MatchSettings(), now=datetime.now(UTC), workers=2)


def test_written_values_are_looked_up_by_key(tmp_path: Path) -> None:
    """Each batch's ledger and open outbox entries are found through the links, then the
    deals by account, then the entries by their full key: never by scanning every entry
    of a connection for each link (quadratic once the ledger fills)."""
    from sync.scale_stream import _OPEN, _WRITTEN_SQL

    store = Store.from_url(f"sqlite:///{tmp_path / 'plan.db'}")
    store.migrate()
    conn = store.engine.raw_connection()
    try:
        conn.execute("CREATE TEMP TABLE scale_link "
                     "(ord INTEGER, connection TEXT, external_id TEXT, customer_id TEXT)")
        for table, only in (("ledger", ""), ("outbox", _OPEN)):
            sql = _WRITTEN_SQL.format(links="temp.scale_link", table=table, only=only)
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (1, 2, 1, 2))]
            searches = [s for s in steps if s.startswith(("SEARCH", "SCAN"))]
            assert searches and all(s.startswith("SEARCH") for s in searches), steps
            entries = [s for s in searches if s.startswith("SEARCH w ")]
            assert len(entries) == 2 and all("external_id=?" in s for s in entries), steps
            deals = [s for s in searches if s.startswith("SEARCH o ")]
            assert deals == ["SEARCH o USING INDEX ix_opportunity_account_ref"
                             " (connection=? AND account_ref=?)"], steps
    finally:
        conn.close()
        store.close()
