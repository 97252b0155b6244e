"""Outbox replace semantics, backoff, dead letters, ledger, notifications, leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from state import NotificationIn, OutboxItemIn, Store
from tests.state.factories import account, opportunity, page

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def item(
    value: object, field: str = "Conflict__c", record: str = "o1", **kw: str | None
) -> OutboxItemIn:
    return OutboxItemIn("sf", "opportunity", record, field, value, **kw)


def test_enqueue_keeps_one_open_item_per_field_and_replaces_changed_values(store: Store) -> None:
    assert store.enqueue([item(True, rule="conflict"), item("Active", field="Status__c")]) == 2
    assert store.enqueue([item(True, rule="conflict")]) == 0  # same value: kept as is
    (first,) = [i for i in store.due_outbox("sf", now=NOW, limit=10) if i.field == "Conflict__c"]
    assert store.enqueue([OutboxItemIn("sf", "opportunity", "o1", "Conflict__c", False,
                                       previous=True, reason="resolved")]) == 1
    due = store.due_outbox("sf", now=NOW, limit=10)
    assert sorted((i.field, i.value) for i in due) == [
        ("Conflict__c", False),
        ("Status__c", "Active"),
    ]
    (replaced,) = [i for i in due if i.field == "Conflict__c"]
    assert replaced.id != first.id and replaced.previous is True and replaced.reason == "resolved"
    # The push that still holds the old item cannot record the new value as written.
    assert store.mark_sent([first.id], now=NOW) == 0
    assert store.ledger("sf") == {}


def test_mark_sent_writes_the_ledger_in_the_same_step(store: Store) -> None:
    store.enqueue([item({"a": 1, "b": [1, 2]}), item("x", field="Other__c")])
    ids = [i.id for i in store.due_outbox("sf", now=NOW, limit=10)]
    assert store.mark_sent(ids, now=NOW) == 2
    assert store.ledger("sf") == {
        ("opportunity", "o1", "Conflict__c"): {"a": 1, "b": [1, 2]},
        ("opportunity", "o1", "Other__c"): "x",
    }
    assert store.ledger("hubspot") == {}
    assert store.due_outbox("sf", now=NOW, limit=10) == []
    assert store.outbox_counts() == {"sf": {"sent": 2}}
    # A later value for a written field is a new item; its send overwrites the ledger.
    assert store.enqueue([item("y", field="Other__c")]) == 1
    (again,) = store.due_outbox("sf", now=NOW, limit=10)
    store.mark_sent([again.id], now=NOW + timedelta(minutes=1))
    assert store.ledger("sf")[("opportunity", "o1", "Other__c")] == "y"


def test_failed_items_wait_for_their_next_attempt(store: Store) -> None:
    store.enqueue([item(True)])
    (pending,) = store.due_outbox("sf", now=NOW, limit=10)
    later = NOW + timedelta(minutes=10)
    store.mark_failed(pending.id, error="UNABLE_TO_LOCK_ROW", now=NOW, next_attempt_at=later,
                      dead=False)
    assert store.due_outbox("sf", now=NOW + timedelta(minutes=9), limit=10) == []
    (failed,) = store.due_outbox("sf", now=later, limit=10)
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 1, "UNABLE_TO_LOCK_ROW")
    assert store.enqueue([item(True)]) == 0  # re-planned with the same value: backoff stands
    assert store.due_outbox("sf", now=NOW, limit=10) == []
    with pytest.raises(LookupError):
        store.mark_failed(99999, error="x", now=NOW, next_attempt_at=None, dead=True)


def test_open_values_are_the_pending_and_failed_items_of_the_asked_connections(
    store: Store,
) -> None:
    store.enqueue([item({"a": 1}), item("sent", field="Sent__c"), item("dead", field="Dead__c"),
                   item("retry", field="Retry__c"),
                   OutboxItemIn("hs", "account", "1", "owner", "dist-x")])
    by_field = {i.field: i for i in store.due_outbox("sf", now=NOW, limit=10)}
    store.mark_sent([by_field["Sent__c"].id], now=NOW)
    store.mark_failed(by_field["Dead__c"].id, error="no", now=NOW, next_attempt_at=None,
                      dead=True)
    store.mark_failed(by_field["Retry__c"].id, error="busy", now=NOW,
                      next_attempt_at=NOW + timedelta(hours=1), dead=False)
    assert store.open_values(["sf"]) == {"sf": {
        ("opportunity", "o1", "Conflict__c"): {"a": 1},
        ("opportunity", "o1", "Retry__c"): "retry",
    }}
    assert store.open_values(["hs", "pd"]) == {"hs": {("account", "1", "owner"): "dist-x"}}
    assert store.open_values([]) == {}
    # the same, for some records of one connection
    _, queued = store.written_values({"sf": [("opportunity", "o1"), ("account", "o1")]})
    assert queued == {"sf": {
        ("opportunity", "o1", "Conflict__c"): {"a": 1},
        ("opportunity", "o1", "Retry__c"): "retry",
    }}
    assert store.written_values({"sf": [("opportunity", "o2")]})[1] == {"sf": {}}


def test_dead_letters_are_not_requeued_with_the_same_value_until_retried(store: Store) -> None:
    store.enqueue([item(True)])
    (pending,) = store.due_outbox("sf", now=NOW, limit=10)
    store.mark_failed(pending.id, error="FIELD_CUSTOM_VALIDATION_EXCEPTION: no", now=NOW,
                      next_attempt_at=None, dead=True)
    (dead,) = store.dead_letters("sf")
    assert dead.state == "dead" and dead.last_error.startswith("FIELD_CUSTOM")  # type: ignore[union-attr]  # set above
    assert store.dead_letters("hubspot") == []
    assert store.enqueue([item(True)]) == 0
    assert store.retry_dead([dead.id], now=NOW) == 1
    (retried,) = store.due_outbox("sf", now=NOW, limit=10)
    assert (retried.id, retried.attempts) == (dead.id, 0)
    assert store.enqueue([item(False)]) == 1  # a different value replaces it
    assert [i.value for i in store.due_outbox("sf", now=NOW, limit=10)] == [False]


def test_due_outbox_is_per_connection_oldest_first_and_limited(store: Store) -> None:
    store.enqueue([item(n, record=f"o{n}") for n in range(5)])  # bare JSON numbers
    store.enqueue([OutboxItemIn("hs", "account", "1", "f", 1)])
    due = store.due_outbox("sf", now=NOW, limit=3)
    assert [i.value for i in due] == [0, 1, 2]
    store.enqueue([item(1.5, record="o1"), item("7", record="o2")])
    values = {i.external_id: i.value for i in store.due_outbox("sf", now=NOW, limit=10)}
    assert (values["o1"], values["o2"]) == (1.5, "7")
    assert store.outbox_counts() == {"sf": {"pending": 5}, "hs": {"pending": 1}}


def test_notifications_are_queued_once_per_key(store: Store) -> None:
    events = [NotificationIn("conflict:c1", "conflict", {"customer": "c1"}),
              NotificationIn("expiry:o1", "expiring", {})]
    assert store.add_notifications(events) == 2
    assert store.add_notifications([*events, NotificationIn("new", "x")]) == 1
    due = store.due_notifications(now=NOW, limit=10)
    assert [n.key for n in due] == ["conflict:c1", "expiry:o1", "new"]
    assert due[0].payload == {"customer": "c1"}
    store.mark_notification(due[0].id, delivered=True, now=NOW)
    store.mark_notification(due[1].id, delivered=False, error="timeout",
                            next_attempt_at=NOW + timedelta(minutes=5))
    store.mark_notification(due[2].id, delivered=False, error="410 Gone")
    assert store.due_notifications(now=NOW, limit=10) == []
    (retry,) = store.due_notifications(now=NOW + timedelta(minutes=5), limit=10)
    assert (retry.key, retry.state, retry.attempts, retry.last_error) == \
        ("expiry:o1", "failed", 1, "timeout")
    assert store.add_notifications(events) == 0  # delivered keys are never queued again


def test_leases_exclude_other_holders_until_expiry(store: Store) -> None:
    ttl = timedelta(seconds=30)
    assert store.try_acquire_lease("scheduler", "node-a", now=NOW, ttl=ttl)
    soon = NOW + timedelta(seconds=10)
    assert not store.try_acquire_lease("scheduler", "node-b", now=soon, ttl=ttl)
    assert store.try_acquire_lease("scheduler", "node-a", now=NOW + timedelta(seconds=20), ttl=ttl)
    assert store.lease_holder("scheduler", now=NOW + timedelta(seconds=40)) == "node-a"
    assert store.try_acquire_lease("scheduler", "node-b", now=NOW + timedelta(seconds=51), ttl=ttl)
    store.release_lease("scheduler", "node-a")  # not the holder any more: no effect
    assert store.lease_holder("scheduler", now=NOW + timedelta(seconds=60)) == "node-b"
    store.release_lease("scheduler", "node-b")
    assert store.lease_holder("scheduler", now=NOW + timedelta(seconds=60)) is None


def test_sent_values_show_in_the_stored_record_until_it_is_read_again(store: Store) -> None:
    run = store.start_run(trigger="test")
    raw = {"Name": "Deal o1", "Conflict__c": False, "Other__c": "old"}
    page(store, [opportunity("o1", raw=raw), opportunity("o2", raw=raw)], run_id=run,
         entity="opportunity")
    before = store.current_values("sf", "opportunity", ["o1", "o2"])
    store.enqueue([item(True), item("new", field="Other__c"), item(True, record="o2")])
    by_record = {i.external_id: i.id for i in store.due_outbox("sf", now=NOW, limit=10)
                 if i.field == "Conflict__c"}
    others = [i.id for i in store.due_outbox("sf", now=NOW, limit=10) if i.field == "Other__c"]
    store.mark_sent([by_record["o1"], *others], now=NOW)
    store.mark_sent([by_record["o2"]], now=NOW, read_there=True)  # booked late: left as read
    after = store.current_values("sf", "opportunity", ["o1", "o2"])
    assert after["o1"] == (before["o1"][0], {**raw, "Conflict__c": True, "Other__c": "new"})
    assert after["o2"] == before["o2"]
    # the read that brings the echo replaces the stored copy as usual
    page(store, [opportunity("o1", raw={**raw, "Conflict__c": "true"})],
         run_id=store.start_run(trigger="test"), entity="opportunity")
    assert store.current_values("sf", "opportunity", ["o1"])["o1"][1]["Conflict__c"] == "true"


def test_written_values_of_several_connections_come_in_one_read_each(store: Store) -> None:
    """The ledger, open outbox values and stored vendor values of records of several
    connections and both entities; an account and a deal may share an id (HubSpot's
    numeric ids do), and another connection's record of the same id is its own."""
    run = store.start_run(trigger="test")
    page(store, [account("7", raw={"name": "Acme"})], run_id=run, connection="hs")
    page(store, [opportunity("7", raw={"dealname": "Deal"})], run_id=run, connection="hs",
         entity="opportunity")
    page(store, [opportunity("7", raw={"Name": "SF deal"})], run_id=run, entity="opportunity")
    store.enqueue([OutboxItemIn("hs", "account", "7", "owner", "dist-a"),
                   OutboxItemIn("hs", "opportunity", "7", "owner", "dist-b"),
                   OutboxItemIn("sf", "opportunity", "7", "Conflict__c", True)])
    sent = [i.id for i in store.due_outbox("hs", now=NOW, limit=10) if i.entity == "account"]
    store.mark_sent(sent, now=NOW)
    keys = {"hs": [("account", "7"), ("opportunity", "7")], "sf": [("opportunity", "7")],
            "pd": [("account", "7")]}
    assert store.written_values(keys) == (
        {"hs": {("account", "7", "owner"): "dist-a"}, "sf": {}, "pd": {}},
        {"hs": {("opportunity", "7", "owner"): "dist-b"},
         "sf": {("opportunity", "7", "Conflict__c"): True}, "pd": {}})
    assert store.written_values({"hs": [("account", "7")]}) == (
        {"hs": {("account", "7", "owner"): "dist-a"}}, {"hs": {}})
    current = store.current_values_of([("hs", "account", "7"), ("hs", "opportunity", "7"),
                                       ("sf", "opportunity", "7"), ("sf", "account", "7")])
    assert {key: raw for key, (_etag, raw) in current.items()} == {
        ("hs", "account", "7"): {"name": "Acme", "owner": "dist-a"},
        ("hs", "opportunity", "7"): {"dealname": "Deal"},
        ("sf", "opportunity", "7"): {"Name": "SF deal"}}
    assert store.written_values({}) == ({}, {}) and store.current_values_of([]) == {}
