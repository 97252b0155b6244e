"""Stored matching keys: read back they give the features normalising gives, an account
changed since its keys were made is normalised again, and so is every account when the
normalisation's version moves."""

from __future__ import annotations

import gc
from typing import Any, cast

import pytest

import rules.features
import sync.scale_stream
from rules.features import KEYS_VERSION, RecordFeatures, made_keys
from rules.match_index import MatchIndex
from rules.matching import AccountRecord, MatchSettings
from state import Store
from sync.cycle import Runtime
from sync.incremental import Engine
from sync.rematch import rematch
from sync.scale_stream import account_features, features_in

FIELDS = ("keys", "country", "duns", "vat", "domain", "name", "compact", "legal_countries")
ACCOUNTS = {
    "crm-a": [
        ("1", "Acme GmbH", "https://acme.de", "DE", "123456789", None),
        ("2", "Nordlicht Oy", None, None, None, "FI12345678"),
        ("3", "Müller & Söhne GmbH & Co. KG", "www.mueller-soehne.de/shop", None, None, None),
        ("4", "Globex S.A.", "mailto:info@gmail.com", None, None, None),  # several countries
    ],
    "crm-b": [
        ("7", "ACME", "shop.acme.co.uk", None, None, None),
        ("8", "The Globex Corporation", "globex.com", "us", None, "123-45-678"),
        ("10", "Tallinn AS", None, None, "12-345-6789", "EE100200300"),
    ],
}


def _fill(store: Store, changes: dict[str, list[tuple[Any, ...]]]) -> int:
    run_id = store.start_run(trigger="test")
    for connection, accounts in changes.items():
        rows = [{"external_id": ext, "name": name, "domain": domain, "country": country,
                 "duns": duns, "vat_id": vat} for ext, name, domain, country, duns, vat
                in accounts]
        store.apply_page(connection=connection, entity="account", rows=rows, deleted_ids=[],
                         skipped=[], cursor={"test": True}, run_id=run_id,
                         full_refresh=False)
    store.finish_run(run_id, status="ok", counts={}, error=None)
    return run_id


def _normalised(accounts: dict[str, list[tuple[Any, ...]]]) -> RecordFeatures:
    return RecordFeatures([AccountRecord(connection, *fields[:6]) for connection, rows
                           in accounts.items() for fields in rows])


def _same(a: RecordFeatures, b: RecordFeatures) -> None:
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name


def _made(features: RecordFeatures) -> set[tuple[str, str]]:
    return {features.keys[position] for position in features.made[2]}


def test_stored_keys_read_back_as_normalising_gives_them(store: Store) -> None:
    _fill(store, ACCOUNTS)
    connections = list(ACCOUNTS)
    first = account_features(store, connections)
    _same(first, _normalised(ACCOUNTS))
    assert _made(first) == set(first.keys)  # nothing stored yet: every account made
    assert first.legal_countries  # the Globex S.A. case is covered
    assert store.save_match_keys(made_keys(first), KEYS_VERSION) == len(first.keys)

    again = account_features(store, connections)
    _same(again, first)
    assert _made(again) == set()


def test_an_account_changed_since_is_normalised_again(store: Store) -> None:
    _fill(store, ACCOUNTS)
    connections = list(ACCOUNTS)
    store.save_match_keys(made_keys(account_features(store, connections)), KEYS_VERSION)
    renamed = ("8", "Globex Holdings Ltd", "globex.co.uk", None, None, None)
    _fill(store, {"crm-b": [renamed, ACCOUNTS["crm-b"][0]]})  # the second is unchanged

    features = account_features(store, connections)
    assert _made(features) == {("crm-b", "8")}
    now = {**ACCOUNTS, "crm-b": [renamed if a[0] == "8" else a for a in ACCOUNTS["crm-b"]]}
    _same(features, _normalised(now))
    position = features.keys.index(("crm-b", "8"))
    assert (features.name[position], features.country[position]) == ("globex holdings", "GB")

    store.save_match_keys(made_keys(features), KEYS_VERSION)
    assert _made(account_features(store, connections)) == set()


def test_a_new_normalisation_version_makes_every_key_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(store, ACCOUNTS)
    connections = list(ACCOUNTS)
    store.save_match_keys(made_keys(account_features(store, connections)), KEYS_VERSION)
    monkeypatch.setattr(sync.scale_stream, "KEYS_VERSION", KEYS_VERSION + 1)
    monkeypatch.setattr(rules.features, "KEYS_VERSION", KEYS_VERSION + 1)
    features = account_features(store, connections)
    assert _made(features) == set(features.keys)
    _same(features, _normalised(ACCOUNTS))


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_the_raw_sqlite_read_equals_the_store_query(store: Store) -> None:
    """The scale path reads SQLite directly (cut to key ranges, in two processes): the
    same features as the store's own query, current keys or not, whole or in parts."""
    _fill(store, ACCOUNTS)
    connections = list(ACCOUNTS)
    half = made_keys(account_features(store, connections))
    store.save_match_keys([made for n, made in enumerate(half) if n % 2], KEYS_VERSION)
    through_store = RecordFeatures.from_stored(
        store.account_inputs_and_keys(connections, KEYS_VERSION))
    conn = store.engine.raw_connection()
    try:
        whole = features_in(conn, connections, None, None)
        parts = RecordFeatures.joined([features_in(conn, connections, None, ("crm-b", "10")),
                                       features_in(conn, connections, ("crm-b", "10"), None)])
    finally:
        conn.close()
    for features in (whole, parts):
        _same(features, through_store)
        assert features.made == through_store.made
    assert 0 < len(whole.made[0]) < len(whole.keys)


def test_the_daemons_match_index_is_built_from_the_stored_keys(store: Store) -> None:
    """The incremental engine's first cycle rebuilds its index from one read of the
    accounts and their stored keys, matches as normalising every account would, and
    stores the keys it had to make."""
    _fill(store, ACCOUNTS)
    connections = list(ACCOUNTS)
    made = made_keys(account_features(store, connections))
    store.save_match_keys([m for n, m in enumerate(made) if n % 2], KEYS_VERSION)
    assert 0 < len(_made(account_features(store, connections))) < len(ACCOUNTS["crm-a"]) + len(
        ACCOUNTS["crm-b"])
    engine = Engine()
    only_names = cast(dict[str, Runtime], dict.fromkeys(connections))  # all it reads
    rematch(store, engine, only_names, MatchSettings(), [], [], [])
    assert engine.index is not None
    records = [AccountRecord(c, *fields[:6]) for c, rows in ACCOUNTS.items() for fields in rows]
    normalised = MatchIndex(settings=MatchSettings()).rebuild(records)
    assert dict(engine.index.links) == dict(normalised.links)
    assert _made(account_features(store, connections)) == set()


def test_the_daemons_match_index_is_kept_out_of_the_collectors_reach(store: Store) -> None:
    """Rebuilt, the index is frozen: a full collection would walk its tens of millions of
    objects at a million accounts. The collector is on again after."""
    _fill(store, ACCOUNTS)
    only_names = cast(dict[str, Runtime], dict.fromkeys(ACCOUNTS))
    try:
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        engine = Engine()
        rematch(store, engine, only_names, MatchSettings(), [], [], [])
        assert engine.index is not None and gc.isenabled()
        assert gc.get_freeze_count() > len(engine.index.records) * 2
    finally:
        gc.unfreeze()
