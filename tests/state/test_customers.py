"""End customers, links, human verdicts, the review queue, findings, runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from state import FindingDelta, FindingIn, RecordKey, ReviewItemIn, Store
from state.customers import ordered_pair

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A = RecordKey("sf", "account", "001A")
B = RecordKey("hs-dist-a", "account", "77")
C = RecordKey("pd-dist-b", "account", "5")
AB, AC, BC = ordered_pair(A, B), ordered_pair(A, C), ordered_pair(B, C)


def test_links_upsert_and_replace(store: Store) -> None:
    store.ensure_customers([("cust-1", "Acme"), ("cust-2", "Globex")])
    store.ensure_customers([("cust-1", "Acme GmbH")])
    assert store.customers() == {"cust-1": "Acme GmbH", "cust-2": "Globex"}
    store.save_customer_links([(*A, "cust-1", "duns", 1.0), (*B, "cust-1", "domain", 0.93)])
    store.save_customer_links([(*B, "cust-2", "name", 0.88)])
    assert store.customer_links() == {A: "cust-1", B: "cust-2"}
    (b_link,) = [r for r in store.customer_link_rows() if r.key == B]
    assert (b_link.method, b_link.score) == ("name", pytest.approx(0.88))
    store.save_customer_links([(*C, "cust-2", "vat", 1.0)], replace=True)
    assert store.customer_links() == {C: "cust-2"}


def test_many_links_are_saved_in_parts_of_one_transaction(store: Store) -> None:
    # past one part of 20,000, given as a generator, a record repeated across parts
    many = (("sf", "account", str(n % 20_002), f"cust-{n}", "name", 0.9) for n in range(20_005))
    store.save_customer_links(many, replace=True)
    links = store.customer_links()
    assert len(links) == 20_002
    assert links[RecordKey("sf", "account", "2")] == "cust-20004"  # the last given wins


def test_match_decisions_are_one_per_pair_latest_wins_and_close_review(store: Store) -> None:
    store.replace_review_items([ReviewItemIn(B, A, 0.81, {"name": 0.9}), ReviewItemIn(A, C, 0.7)])
    (top, other) = store.review_items()
    assert AB == (B, A)  # stored in sorted order whichever way it was given
    assert (top.a, top.b, top.score, top.evidence) == (*AB, pytest.approx(0.81), {"name": 0.9})
    assert (other.a, other.b) == AC
    store.record_match_decision(B, A, "never", "maria", now=NOW)
    store.record_match_decision(A, B, "same", "li", now=NOW + timedelta(hours=1))
    (decision,) = store.match_decisions()
    assert (decision.a, decision.b, decision.verdict, decision.decided_by) == (*AB, "same", "li")
    assert [(r.a, r.b) for r in store.review_items()] == [AC]
    assert [r.status for r in store.review_items(status="resolved")] == ["resolved"]
    with pytest.raises(ValueError, match="verdict must be one of"):
        store.record_match_decision(A, C, "maybe", "li")
    with pytest.raises(ValueError, match="paired with itself"):
        store.record_match_decision(A, A, "same", "li")


def test_replacing_review_items_drops_stale_open_ones_but_keeps_resolved(store: Store) -> None:
    store.replace_review_items([ReviewItemIn(A, B, 0.8), ReviewItemIn(A, C, 0.75)])
    store.record_match_decision(A, B, "never", "maria", now=NOW)
    store.replace_review_items([ReviewItemIn(A, B, 0.85), ReviewItemIn(B, C, 0.6)])
    assert [(r.a, r.b) for r in store.review_items()] == [BC]
    assert [(r.a, r.b) for r in store.review_items(status=None)] == [AB, BC]


def test_replacing_the_review_items_of_some_records_leaves_the_rest(store: Store) -> None:
    D = RecordKey("pd-dist-b", "account", "9")
    store.replace_review_items([ReviewItemIn(A, B, 0.8), ReviewItemIn(B, C, 0.75),
                                ReviewItemIn(C, D, 0.7), ReviewItemIn(A, D, 0.65)])
    store.record_match_decision(A, D, "never", "maria", now=NOW)
    # the items naming B (first of BC, second of AB) are replaced by one; CD names no B
    store.replace_review_items([ReviewItemIn(B, C, 0.9)], involving=[B])
    assert [(r.a, r.b, r.score) for r in store.review_items()] == [
        (*BC, pytest.approx(0.9)), (*ordered_pair(C, D), pytest.approx(0.7))]
    # a resolved pair stays resolved; nothing given: the open items naming D go
    store.replace_review_items([], involving=[D, RecordKey("sf", "account", "gone")])
    assert [(r.a, r.b) for r in store.review_items()] == [BC]
    assert [(r.a, r.b) for r in store.review_items(status="resolved")] == [ordered_pair(A, D)]


def test_findings_open_resolve_and_reopen(store: Store) -> None:
    conflict = FindingIn("conflict:cust-1", "conflict", "two_owners", customer_id="cust-1",
                         evidence={"owners": ["dist-a", "dist-b"]})
    expiry = FindingIn("expiry:sf:o1", "registration_expiring", "expiry", connection="sf",
                       entity="opportunity", external_id="o1")
    assert store.upsert_findings([conflict, expiry], now=NOW) == FindingDelta(
        opened=("conflict:cust-1", "expiry:sf:o1"), resolved=()
    )
    later = NOW + timedelta(hours=1)
    assert store.upsert_findings([conflict], now=later) == FindingDelta((), ("expiry:sf:o1",))
    (still,) = store.open_findings()
    assert (still.key, still.first_seen, still.last_seen) == ("conflict:cust-1", NOW, later)
    assert still.evidence == {"owners": ["dist-a", "dist-b"]}
    partial = store.upsert_findings([expiry], now=later, complete=False)
    assert partial == FindingDelta(opened=("expiry:sf:o1",), resolved=())
    assert len(store.open_findings()) == 2 and len(store.findings()) == 2
    assert store.resolve_findings(["conflict:cust-1", "nope"], now=later) == 1
    assert [f.key for f in store.open_findings()] == ["expiry:sf:o1"]


def test_a_partial_upsert_touches_unchanged_findings_and_rewrites_changed_ones(
    store: Store,
) -> None:
    def conflict(owners: list[str]) -> FindingIn:
        return FindingIn("conflict:cust-1", "conflict", "two_owners", customer_id="cust-1",
                         evidence={"owners": owners})

    expiry = FindingIn("expiry:sf:o1", "registration_expiring", "expiry", connection="sf",
                       entity="opportunity", external_id="o1", evidence={"days": 3})
    store.upsert_findings([conflict(["a", "b"]), expiry], now=NOW)
    later, latest = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    # the same content: still open, only seen later
    assert store.upsert_findings([conflict(["a", "b"]), expiry], now=later,
                                 complete=False) == FindingDelta((), ())
    found = {f.key: f for f in store.open_findings()}
    assert [(f.first_seen, f.last_seen) for f in found.values()] == [(NOW, later)] * 2
    # new evidence is written; a resolved finding seen again reopens
    store.resolve_findings(["expiry:sf:o1"], now=later)
    delta = store.upsert_findings([conflict(["a", "c"]), expiry], now=latest, complete=False)
    assert delta == FindingDelta(opened=("expiry:sf:o1",), resolved=())
    found = {f.key: f for f in store.open_findings()}
    assert found["conflict:cust-1"].evidence == {"owners": ["a", "c"]}
    assert found["conflict:cust-1"].last_seen == latest
    assert found["expiry:sf:o1"].resolved_at is None and found["expiry:sf:o1"].last_seen == latest


def test_runs_record_history_per_connection(store: Store) -> None:
    run1, parts1 = store.open_run(trigger="schedule", connections=["sf"])
    cr = parts1["sf"]
    store.finish_connection_run(cr, status="ok", counts={"account": {"pulled": 3}},
                                budget={"used": 10}, error=None, writes_sent=2)
    store.finish_run(run1, status="ok", counts={"pulled": 3}, error=None)
    run2, parts2 = store.open_run(trigger="manual", connections=["sf", "hs"])
    cr2 = parts2["sf"]
    store.finish_connection_run(cr2, status="failed", counts={}, budget=None, error="401")
    assert run2 > run1
    (latest, first) = store.recent_runs()
    assert (latest.id, latest.status, latest.finished_at) == (run2, "running", None)
    assert (first.status, first.counts, first.trigger) == ("ok", {"pulled": 3}, "schedule")
    last = store.last_connection_runs()
    assert (last["sf"].run_id, last["sf"].status, last["sf"].error) == (run2, "failed", "401")
    assert last["hs"].status == "running"
    (older,) = store.connection_runs(run1)
    assert (older.writes_sent, older.budget) == (2, {"used": 10})
    assert older.counts == {"account": {"pulled": 3}}
    with pytest.raises(LookupError):
        store.finish_run(999, status="ok", counts={}, error=None)
