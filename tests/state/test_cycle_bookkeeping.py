"""A cycle's fixed bookkeeping in few transactions: runs opened and closed together, and
one read for which connections have anything queued."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from state import OutboxItemIn, Store
from state.rows import FindingIn, RecordKey
from state.runs import ConnectionRunEnd

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_run_and_its_connection_runs_open_and_close_together(store: Store) -> None:
    run_id, parts = store.open_run(trigger="schedule", connections=["sf", "hs", "pd"])
    assert list(parts) == ["sf", "hs", "pd"]
    assert [p.connection for p in store.connection_runs(run_id)] == ["sf", "hs", "pd"]
    assert {p.id: p.status for p in store.connection_runs(run_id)} == {
        cr_id: "running" for cr_id in parts.values()}
    store.close_run(run_id, status="partial", counts={"n": 1}, error="hs: 401", parts=[
        ConnectionRunEnd(parts["sf"], status="ok", counts={"a": 1}, budget={"used": 3},
                         error=None),
        ConnectionRunEnd(parts["hs"], status="failed", counts={}, budget=None, error="401"),
        ConnectionRunEnd(parts["pd"], status="ok", counts={}, budget=None, error=None),
    ])
    (run,) = store.recent_runs()
    assert (run.id, run.status, run.counts, run.error) == (run_id, "partial", {"n": 1}, "hs: 401")
    assert run.finished_at is not None
    found = {p.connection: p for p in store.connection_runs(run_id)}
    assert (found["sf"].status, found["sf"].counts, found["sf"].budget) == (
        "ok", {"a": 1}, {"used": 3})
    assert (found["hs"].status, found["hs"].error) == ("failed", "401")
    assert all(p.finished_at is not None for p in found.values())


def test_closing_a_run_with_an_unknown_part_changes_nothing(store: Store) -> None:
    run_id, parts = store.open_run(trigger="manual", connections=["sf"])
    with pytest.raises(LookupError):
        store.close_run(run_id, status="ok", counts={}, error=None, parts=[
            ConnectionRunEnd(parts["sf"], status="ok", counts={}, budget=None, error=None),
            ConnectionRunEnd(999, status="ok", counts={}, budget=None, error=None),
        ])
    (run,) = store.recent_runs()
    assert run.status == "running"  # one transaction: the known part is not closed either
    assert [p.status for p in store.connection_runs(run_id)] == ["running"]


def test_a_run_without_connections(store: Store) -> None:
    run_id, parts = store.open_run(trigger="manual", connections=[])
    assert parts == {} and store.connection_runs(run_id) == []
    store.close_run(run_id, status="ok", counts={}, error=None, parts=[])
    assert store.recent_runs()[0].status == "ok"


def test_with_open_items_names_connections_with_pending_or_failed_items(store: Store) -> None:
    assert store.with_open_items(["sf", "hs"]) == set()
    store.enqueue([OutboxItemIn("sf", "opportunity", "o1", "F__c", 1),
                   OutboxItemIn("hs", "deal", "d1", "f", 2),
                   OutboxItemIn("pd", "deal", "d2", "f", 3)])
    assert store.with_open_items(["sf", "hs", "dyn"]) == {"sf", "hs"}
    (sf,) = store.due_outbox("sf", now=NOW, limit=10)
    store.mark_sent([sf.id], now=NOW)
    (hs,) = store.due_outbox("hs", now=NOW, limit=10)
    store.mark_failed(hs.id, error="503", now=NOW, next_attempt_at=NOW, dead=False)
    # a failed item waiting for its next attempt is still open: its drain decides when
    assert store.with_open_items(["sf", "hs", "pd"]) == {"hs", "pd"}
    assert store.with_open_items([]) == set()


def test_calls_with_nothing_in_them_open_no_transaction(store: Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet incremental cycle asks the store about no record: each such call returns
    at once instead of taking a connection (and, for writes, SQLite's lock)."""
    opened: list[str] = []
    monkeypatch.setattr(store, "_read", lambda: opened.append("read"))
    monkeypatch.setattr(store, "_write", lambda: opened.append("write"))
    assert store.opportunities_by_keys([]) == [] and store.accounts_by_keys([]) == []
    assert store.opportunities_of_accounts([]) == []
    assert store.evaluated_refs([]) == {} and store.links_of([]) == {}
    assert store.records_of_customers([]) == ([], [])
    assert store.open_finding_keys([], []) == set()
    assert store.current_values("sf", "account", []) == {}
    assert store.written_values({"sf": []}) == ({"sf": {}}, {"sf": {}})
    store.save_evaluated_refs({}, gone=[])
    store.save_thresholds({}, replacing=[])
    delta = store.upsert_findings([], now=NOW, complete=False)
    assert (delta.opened, delta.resolved) == ((), ())
    assert opened == []


def test_empty_calls_that_mean_everything_still_act(store: Store) -> None:
    """No shortcut where empty input has a meaning: no thresholds for a full evaluation
    clears them all; no findings in a complete set resolves every open one."""
    later = datetime(2026, 3, 2, tzinfo=UTC)
    store.save_thresholds({"cust-1": later})
    store.save_thresholds({})
    assert store.due_groups(datetime(2027, 1, 1, tzinfo=UTC)) == set()
    store.upsert_findings([FindingIn("conflict:cust-1", "conflict", "r", customer_id="cust-1")],
                          now=NOW)
    assert store.upsert_findings([], now=later).resolved == ("conflict:cust-1",)


def _statement_caches() -> tuple[int, int]:
    from state import base

    return base._keys_query.cache_info().currsize, base._upsert.cache_info().currsize


def test_a_cycles_keyed_reads_and_upserts_reuse_their_statements(store: Store) -> None:
    """Each statement shape is built once per process: building one makes a proxy of every
    column of its table, which cost more than running it. A condition made afresh on every
    call would build (and keep) a statement per call: the caches would grow."""
    keys = [("account", "a1"), ("opportunity", "o1")]

    def a_cycles_calls() -> None:
        store.save_engine_state("incremental", {"generation": 1})
        store.ensure_customers([("cus_1", "Acme")])
        store.save_customer_links([("sf", "account", "a1", "cus_1", "duns", 1.0)])
        store.upsert_findings([], now=NOW, complete=False)
        assert store.written_values({"sf": keys}) == ({"sf": {}}, {"sf": {}})
        assert store.links_of([("sf", "a1"), ("sf", "a2")]) == {
            ("sf", "a1"): ("cus_1", "duns", 1.0)}
        assert store.evaluated_refs([("sf", "o1")]) == {}
        assert store.accounts_by_keys([("sf", "a1")]) == []
        assert store.opportunities_of_accounts([("sf", "a1")]) == []
        assert store.open_finding_keys(["cus_1"], [RecordKey("sf", "account", "a1")]) == set()
        assert store.current_values("sf", "account", ["a1"]) == {}
        assert store.records_of_customers(["cus_1"]) == ([], [])
        store.replace_review_items([], involving=[RecordKey("sf", "account", "a1")])

    a_cycles_calls()
    built = _statement_caches()
    for _ in range(3):
        a_cycles_calls()
    assert _statement_caches() == built


def test_a_cycles_keyed_reads_go_through_indexes(tmp_path: Path) -> None:
    """Each keyed read of a partial evaluation finds its rows by index, never by reading a
    whole table (a million accounts' findings, links or deals): SQLite's plan for every
    statement they send says SEARCH, not SCAN, for the store's tables."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'plans.db'}")
    store.migrate()
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "json_each" in statement:
            sent.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        keys = [("sf", "a1")]
        store.written_values({"sf": [("account", "a1"), ("opportunity", "o1")]})
        store.current_values_of([("sf", "account", "a1"), ("sf", "opportunity", "o1")])
        store.links_of(keys)
        store.evaluated_refs(keys)
        store.accounts_by_keys(keys)
        store.opportunities_by_keys(keys)
        store.opportunities_of_accounts(keys)
        store.open_finding_keys(["cus_1"], [RecordKey("sf", "account", "a1")])
        store.replace_review_items([], involving=[RecordKey("sf", "account", "a1")])
        sa.event.remove(store.engine, "before_cursor_execute", record)
        assert len(sent) >= 12
        with store.engine.connect() as conn:
            for statement, parameters in sent:
                plan = [row[3] for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters)]
                scans = [step for step in plan
                         if step.startswith("SCAN") and "json_each" not in step]
                assert not scans, (statement, plan)
    finally:
        store.close()


def test_calls_inside_atomic_commit_together_and_see_each_other(
        store: Store, migrated_store_url: str) -> None:
    other = Store.from_url(migrated_store_url)  # another process's view
    try:
        with store.atomic():
            store.save_engine_state("incremental", {"generation": 7})
            queued = store.enqueue([OutboxItemIn("sf", "opportunity", "o1", "F__c", 1)])
            assert queued == 1
            assert store.engine_state("incremental") == {"generation": 7}  # its own writes
            with store.atomic():  # nested: joins, commits nothing of its own
                store.save_engine_state("other", {"n": 1})
            assert other.engine_state("other") is None
            assert other.with_open_items(["sf"]) == set()  # nothing visible before the end
        assert other.engine_state("incremental") == {"generation": 7}
        assert other.engine_state("other") == {"n": 1}
        assert other.with_open_items(["sf"]) == {"sf"}
    finally:
        other.close()


def test_an_error_inside_atomic_leaves_nothing_of_it(store: Store) -> None:
    store.save_engine_state("incremental", {"generation": 1})
    with pytest.raises(RuntimeError), store.atomic():
        store.save_engine_state("incremental", {"generation": 2})
        store.enqueue([OutboxItemIn("sf", "opportunity", "o1", "F__c", 1)])
        with store.atomic():
            store.save_engine_state("other", {"n": 1})
        raise RuntimeError("crash between the outbox and the end")
    assert store.engine_state("incremental") == {"generation": 1}
    assert store.engine_state("other") is None
    assert store.with_open_items(["sf"]) == set()
    store.save_engine_state("after", {"ok": True})  # the store is usable again
    assert store.engine_state("after") == {"ok": True}
