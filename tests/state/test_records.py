"""Page upserts: counts, change detection, tombstones, crash safety, snapshots."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state import PageResult, RecordKey, Store
from state.pagewrite import CANONICAL_FIELDS, record_table
from state.records import RecordsMixin
from tests.state.factories import T0, account, opportunity, page


def test_canonical_vocabulary_has_a_column_for_every_field() -> None:
    for entity, names in CANONICAL_FIELDS.items():
        assert set(names) <= set(record_table(entity).c.keys()), entity


def test_first_page_inserts_and_rereading_it_changes_nothing(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    rows = [account("a1"), account("a2"), account("a3")]
    assert page(store, rows, run_id=run1) == PageResult(3, 0, 0, 0, 0)
    run2 = store.start_run(trigger="test")
    assert page(store, rows, run_id=run2) == PageResult(0, 0, 3, 0, 0)
    assert {a.changed_generation for a in store.load_accounts()} == {run1}
    assert store.changed_since(run1) == set()


def test_canonical_change_bumps_generation_but_echo_of_metadata_does_not(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1"), account("a2")], run_id=run1)
    run2 = store.start_run(trigger="test")
    later = T0 + timedelta(minutes=5)
    # a1: our own write came back (new etag, modstamp, raw) with the same canonical values.
    echo = account("a1", etag="2", vendor_modified_at=later, raw={"Name": "x", "flag": True})
    edited = account("a2", channel_owner="dist-z", vendor_modified_at=later)
    assert page(store, [echo, edited], run_id=run2) == PageResult(0, 1, 1, 0, 0)
    by_id = {a.external_id: a for a in store.load_accounts()}
    assert by_id["a1"].changed_generation == run1
    assert by_id["a1"].etag == "2" and by_id["a1"].vendor_modified_at == later
    assert by_id["a2"].changed_generation == run2
    assert by_id["a2"].channel_owner == "dist-z"
    assert store.changed_since(run1) == {RecordKey("sf", "account", "a2")}
    assert store.current_values("sf", "account", ["a1", "zz"]) == {
        "a1": ("2", {"Name": "x", "flag": True})
    }


def test_null_to_value_and_value_to_null_are_changes(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1", duns=None)], run_id=run1)
    run2 = store.start_run(trigger="test")
    assert page(store, [account("a1")], run_id=run2).updated == 1
    run3 = store.start_run(trigger="test")
    assert page(store, [account("a1", domain=None)], run_id=run3).updated == 1
    assert store.load_accounts()[0].domain is None


def test_values_round_trip_with_types_and_utc_instants(store: Store) -> None:
    run = store.start_run(trigger="test")
    row = opportunity("o1")
    page(store, [row], run_id=run, entity="opportunity")
    (loaded,) = store.load_opportunities()
    assert loaded.amount == Decimal("12500.50")
    assert loaded.close_date == row["close_date"]
    assert loaded.created_at == row["created_at"]
    assert loaded.created_at is not None and loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.key == RecordKey("sf", "opportunity", "o1")
    assert loaded.account_key == RecordKey("sf", "account", "a1")
    assert store.raw_record(loaded.key) == row["raw"]
    rerun = store.start_run(trigger="test")
    assert page(store, [row], run_id=rerun, entity="opportunity").unchanged == 1


def test_duplicate_ids_in_one_page_keep_the_last(store: Store) -> None:
    run = store.start_run(trigger="test")
    result = page(store, [account("a1", name="old"), account("a1", name="new")], run_id=run)
    assert result.inserted == 1
    assert [a.name for a in store.load_accounts()] == ["new"]


def test_same_external_id_in_two_connections_is_two_records(store: Store) -> None:
    run = store.start_run(trigger="test")
    page(store, [account("a1")], run_id=run, connection="sf")
    page(store, [account("a1")], run_id=run, connection="hubspot-dist-a")
    assert sorted(a.connection for a in store.load_accounts()) == ["hubspot-dist-a", "sf"]


def test_deleted_ids_tombstone_and_a_returning_record_is_undeleted(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1"), account("a2")], run_id=run1)
    run2 = store.start_run(trigger="test")
    assert page(store, [], run_id=run2, deleted=("a1", "unknown")).deleted == 1
    assert [a.external_id for a in store.load_accounts()] == ["a2"]
    (gone,) = [a for a in store.load_accounts(include_deleted=True) if a.deleted]
    assert gone.changed_generation == run2 and gone.deleted_at is not None
    assert page(store, [], run_id=run2, deleted=("a1",)).deleted == 0  # already gone
    run3 = store.start_run(trigger="test")
    assert page(store, [account("a1")], run_id=run3) == PageResult(0, 1, 0, 0, 0)
    back = {a.external_id: a for a in store.load_accounts()}["a1"]
    assert not back.deleted and back.deleted_at is None and back.changed_generation == run3


def test_full_refresh_tombstones_what_it_did_not_return(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1"), account("a2"), account("a3")], run_id=run1)
    run2 = store.start_run(trigger="test")
    # Unchanged rows must still count as seen by the refresh.
    page(store, [account("a1")], run_id=run2, full_refresh=True)
    page(store, [account("a3")], run_id=run2, full_refresh=True)
    assert store.tombstone_unseen(connection="sf", entity="account", run_id=run2) == 1
    assert [a.external_id for a in store.load_accounts()] == ["a1", "a3"]
    page(store, [account("b1")], run_id=run2, connection="other")
    assert store.tombstone_unseen(connection="sf", entity="account", run_id=run2) == 0


def test_full_refresh_resumed_in_a_later_run_keeps_records_seen_before(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1"), account("a2"), account("a3")], run_id=run1)
    store.reset_cursor("sf", "account")
    run2 = store.start_run(trigger="test")
    page(store, [account("a1")], run_id=run2, full_refresh=True)  # then the run dies
    run3 = store.start_run(trigger="test")
    result = page(store, [account("a2")], run_id=run3, full_refresh=True, complete=True)
    assert result.deleted == 1
    assert [a.external_id for a in store.load_accounts()] == ["a1", "a2"]


def test_skipped_records_are_kept_with_reason_and_payload(store: Store) -> None:
    run = store.start_run(trigger="test")
    skipped = [("x9", "amount: not a number 'abc'", {"Amount": "abc"}), (None, "no id", None)]
    assert page(store, [account("a1")], run_id=run, skipped=skipped).skipped == 2
    rows = store.skipped_records(run_id=run)
    assert {(r.external_id, r.reason) for r in rows} == {(e, r) for e, r, _ in skipped}
    assert {r.external_id: r.payload for r in rows}["x9"] == {"Amount": "abc"}


def test_cursor_advances_with_the_page_and_resets(store: Store) -> None:
    assert store.get_cursor("sf", "account") is None
    run = store.start_run(trigger="test")
    page(store, [account("a1")], run_id=run, cursor={"since": "2026-03-01T09:30:00Z", "id": 7})
    assert store.get_cursor("sf", "account") == {"since": "2026-03-01T09:30:00Z", "id": 7}
    page(store, [], run_id=run, cursor={"since": "later"})
    assert store.get_cursor("sf", "account") == {"since": "later"}
    assert store.get_cursor("sf", "opportunity") is None
    store.reset_cursor("sf", "account")
    assert store.get_cursor("sf", "account") is None


def test_a_cycles_cursors_are_read_at_once_per_connection_and_entity(store: Store) -> None:
    run = store.start_run(trigger="test")
    page(store, [account("a1")], run_id=run, cursor={"since": "sf-a"})
    page(store, [], run_id=run, entity="opportunity", cursor={"since": "sf-o"})
    page(store, [account("h1")], run_id=run, connection="hs", cursor={"after": 3})
    page(store, [account("p1")], run_id=run, connection="pd", cursor={"since": "pd-a"})
    assert store.cursors(["sf", "hs", "none"]) == {
        ("sf", "account"): {"since": "sf-a"}, ("sf", "opportunity"): {"since": "sf-o"},
        ("hs", "account"): {"after": 3}}
    assert store.cursors([]) == {}
    store.reset_cursor("sf", "opportunity")
    assert set(store.cursors(["sf"])) == {("sf", "account")}


def test_a_failure_mid_page_leaves_rows_and_cursor_as_they_were(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [account("a1")], run_id=run1, cursor={"since": "one"})

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(RecordsMixin, "_save_cursor", explode)
    run2 = store.start_run(trigger="test")
    with pytest.raises(RuntimeError, match="disk full"):
        page(store, [account("a1", name="changed"), account("a2")], run_id=run2,
             deleted=("a1",), skipped=[("z", "bad", None)], cursor={"since": "two"})
    monkeypatch.undo()
    assert [(a.external_id, a.name, a.deleted) for a in store.load_accounts(include_deleted=True)] \
        == [("a1", "Acme a1 GmbH", False)]
    assert store.get_cursor("sf", "account") == {"since": "one"}
    assert store.skipped_records(run_id=run2) == []


def test_a_mapping_bug_fails_loudly_with_the_record_named(store: Store) -> None:
    run = store.start_run(trigger="test")
    with pytest.raises(ValueError, match=r"sf/account record a1: unknown fields \['colour'\]"):
        page(store, [account("a1", colour="red")], run_id=run)
    with pytest.raises(ValueError, match="unknown entity 'lead'"):
        page(store, [], run_id=run, entity="lead")
    assert store.load_accounts(include_deleted=True) == []


def test_rows_with_bad_values_become_skipped_records_and_the_rest_is_stored(
    store: Store,
) -> None:
    run = store.start_run(trigger="test")
    rows = [
        opportunity("o1", amount="lots"),
        opportunity("o2", close_date=12),
        {"name": "no id"},
        opportunity("o3"),
    ]
    result = page(store, rows, run_id=run, entity="opportunity")
    assert (result.inserted, result.skipped) == (1, 3)
    assert [o.external_id for o in store.load_opportunities()] == ["o3"]
    reasons = {r.external_id: r.reason for r in store.skipped_records(run_id=run)}
    assert reasons["o1"].startswith("field amount:")
    assert reasons["o2"] == "field close_date: expected a date, got int 12"
    assert "external_id must be a non-empty string" in reasons[None]
    assert {r.external_id: r.payload for r in store.skipped_records(run_id=run)}["o2"][
        "currency"
    ] == "EUR"


def test_unambiguous_values_are_coerced(store: Store) -> None:
    run = store.start_run(trigger="test")
    row = opportunity(
        "o1", owner_user=4711, amount="99.50", close_date="2026-07-01T00:00:00Z",
        registered_at="2026-03-01T09:30:00Z", last_activity_at=date(2026, 2, 3),
    )
    page(store, [row | {"external_id": 1234}], run_id=run, entity="opportunity")
    (loaded,) = store.load_opportunities()
    assert (loaded.external_id, loaded.owner_user) == ("1234", "4711")
    assert loaded.amount == Decimal("99.5")
    assert loaded.close_date == date(2026, 7, 1)
    assert loaded.registered_at == T0
    assert loaded.last_activity_at == datetime(2026, 2, 3, tzinfo=UTC)


def test_naive_datetimes_are_taken_as_utc(store: Store) -> None:
    run = store.start_run(trigger="test")
    page(store, [account("a1", modified_at=datetime(2026, 1, 2, 3, 4, 5))], run_id=run)
    assert store.load_accounts()[0].modified_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_concurrent_pages_from_two_connections_all_land(store: Store) -> None:
    """The pull runs connections in parallel threads; every page must be stored."""
    from concurrent.futures import ThreadPoolExecutor

    run = store.start_run(trigger="test")

    def pull(connection: str) -> int:
        inserted = 0
        for batch in range(5):
            rows = [account(f"{batch}-{n}") for n in range(40)]
            result = page(store, rows, run_id=run, connection=connection,
                          cursor={"batch": batch})
            inserted += result.inserted
        return inserted

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(pull, ["sf", "hubspot"]))
    assert counts == [200, 200]
    assert len(store.load_accounts()) == 400
    assert store.get_cursor("sf", "account") == store.get_cursor("hubspot", "account") == {
        "batch": 4
    }


def test_nul_characters_are_replaced_not_fatal(store: Store) -> None:
    """PostgreSQL cannot store NUL; one bad character must not sink a whole page."""
    run = store.start_run(trigger="test")
    row = account("a1", name="Ac\x00me", raw={"Name": "Ac\x00me"})
    skipped = [("x", "bad", {"v": "\x00"})]
    assert page(store, [row], run_id=run, skipped=skipped).inserted == 1
    (loaded,) = store.load_accounts()
    assert loaded.name == "Ac\ufffdme"
    assert store.raw_record(loaded.key) == {"Name": "Ac\ufffdme"}
    assert store.skipped_records(run_id=run)[0].payload == {"v": "\ufffd"}
    rerun = store.start_run(trigger="test")
    assert page(store, [row], run_id=rerun).unchanged == 1


def test_refs_rewritten_after_a_generation_equal_a_full_snapshot(store: Store) -> None:
    run1 = store.start_run(trigger="test")
    page(store, [opportunity("o1"), opportunity("o2"), opportunity("o3", account_ref=None)],
         run_id=run1, entity="opportunity")
    store.snapshot_opportunity_refs()
    run2 = store.start_run(trigger="test")
    page(store, [opportunity("o1", account_ref="a9"), opportunity("o4", account_ref="a2")],
         run_id=run2, entity="opportunity", deleted=("o2",))
    keys = [("sf", k) for k in ("o1", "o2", "o3", "o4")]
    assert store.evaluated_refs(keys) == {("sf", "o1"): "a1", ("sf", "o2"): "a1",
                                          ("sf", "o3"): None}
    store.snapshot_opportunity_refs(changed_after=run1)  # only o1, o2 and o4 are written
    expected = {("sf", "o1"): "a9", ("sf", "o3"): None, ("sf", "o4"): "a2"}
    assert store.evaluated_refs(keys) == expected
    store.snapshot_opportunity_refs()
    assert store.evaluated_refs(keys) == expected


def test_deals_of_no_customer_by_stored_links_and_by_given_links(store: Store) -> None:
    run = store.start_run(trigger="test")
    page(store, [opportunity("linked"), opportunity("also-linked"),
                 opportunity("unlinked", account_ref="a2"), opportunity("no-ref", account_ref=None),
                 opportunity("gone", account_ref="a3")],
         run_id=run, entity="opportunity", deleted=("gone",))
    store.save_customer_links([("sf", "account", "a1", "cust-1", "duns", 1.0)])

    def keys(rows: list[Any]) -> list[str]:
        return sorted(o.external_id for o in rows)

    # one query per distinct reference: a1 is linked, a2 is not, a3 has only a deleted deal
    assert keys(store.unmatched_opportunities()) == ["no-ref", "unlinked"]
    assert keys(store.unmatched_opportunities({("sf", "a1")})) == ["no-ref", "unlinked"]
    assert keys(store.unmatched_opportunities({("sf", "a2")})) == [
        "also-linked", "linked", "no-ref"]
