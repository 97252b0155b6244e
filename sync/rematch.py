"""The incremental engine's matching: its :class:`rules.match_index.MatchIndex`, rebuilt in a
fresh process or updated with a cycle's changed accounts, and what moved saved to the store
(links, customers, the review items of the re-matched accounts).

At a million accounts the index holds tens of millions of objects for as long as the
process runs, so it is built with the garbage collector off and then frozen out of its
reach, and a partial evaluation runs with the collector off (:func:`collector_paused`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rules.features import KEYS_VERSION, RecordFeatures, made_keys
from rules.match_index import MatchIndex
from rules.matching import AccountRecord, Link, MatchResult, MatchSettings
from state.rows import AccountRow
from state.rows import RecordKey as StoreKey
from sync.cycle import Runtime
from sync.snapshot import as_decision, review_rows

if TYPE_CHECKING:
    from sync.incremental import Engine

AccountKey = tuple[str, str]  # (connection, external id)


def rematch(
    store: Any, engine: Engine, by_name: Mapping[str, Runtime], settings: MatchSettings,
    changed_accounts: list[AccountKey], decisions: Sequence[Any], new_decisions: Sequence[Any],
) -> tuple[MatchResult, set[AccountKey], set[AccountKey], bool]:
    """(result of the re-matched area, the area's accounts, accounts gone, whether the index
    was rebuilt: its review items are then the whole queue, not the area's)."""
    if engine.index is None:
        with _long_lived():
            index = MatchIndex(settings=settings)
            # only the columns matching needs (every account: a large store's rows are big),
            # with the stored matching keys: only the accounts changed since are normalised
            rows = store.account_inputs_and_keys(list(by_name), KEYS_VERSION)
            records = [AccountRecord(*row[2:9]) for row in rows]
            features = RecordFeatures.from_stored(rows)
            del rows
            stored = store.account_links()
            result = index.rebuild(records, decisions=[as_decision(d) for d in decisions],
                                   previous={k: link[0] for k, link in stored.items()},
                                   features=features)
            if features.made[0]:
                store.save_match_keys(made_keys(features), KEYS_VERSION)
            del features
            engine.index, engine.settings = index, settings
            # links that differ from the stored ones in any way (customer, method, score)
            moved = {k for k, link in result.links.items() if stored.get(k) != as_stored(link)}
            gone = {k for k in stored if k not in result.links}
            return MatchResult(links={k: result.links[k] for k in moved}, review=result.review), \
                moved, gone, True
    index = engine.index
    rows = store.accounts_by_keys(changed_accounts)
    live = [_account_record(a) for a in rows if not a.deleted and a.connection in by_name]
    present = {(a.connection, a.external_id) for a in live}
    removed = {k for k in changed_accounts if k not in present and k in index.records}
    result = index.update(changed=live, removed=removed,
                          decisions=[as_decision(d) for d in new_decisions])
    return result, set(result.links), removed, False


def save_area(store: Any, index: MatchIndex, match: MatchResult, area: set[AccountKey],
              removed: set[AccountKey], *, rebuilt: bool,
              stored: Mapping[AccountKey, tuple[str, str, float]]) -> None:
    """Store what :func:`rematch` moved: the area's links that differ from the ``stored``
    ones (customer, method or score) and their new customers, the links of the accounts
    gone, and the review items (the whole queue after a rebuild, else those that name an
    account of the area or gone)."""
    if removed:
        store.drop_customer_links(removed)
    linked = [(k, link) for k in sorted(area) if (link := index.links.get(k)) is not None
              and stored.get(k) != as_stored(link)]
    if linked:
        names: dict[str, str] = {}  # a new customer is named after its first account
        for k, link in linked:
            record = index.records[k]
            names.setdefault(link.customer_id, record.name or record.external_id)
        store.ensure_customers(sorted(names.items()))
        store.save_customer_links([(k[0], "account", k[1], link.customer_id, link.method,
                                    link.score) for k, link in linked])
    if rebuilt:
        store.replace_review_items(review_rows(match))
    elif area or removed:  # the index replaced the review items that name these accounts
        store.replace_review_items(review_rows(match),
                                   involving=[StoreKey(c, "account", x)
                                              for c, x in area | removed])


def as_stored(link: Link) -> tuple[str, str, float]:
    """A link as :meth:`Store.links_of` and :meth:`Store.account_links` return it."""
    return link.customer_id, link.method, float(link.score)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a partial evaluation with the garbage collector off: it makes hundreds of
    thousands of short-lived, acyclic objects at a million accounts, and each full
    collection they set off walked every object still live (18 of them cost 5.6 s of a 1%
    cycle). What it leaves is freed by refcounting; the collector runs again after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def _long_lived() -> Iterator[None]:
    """Build what stays in memory across cycles (the match index: tens of millions of
    objects at a million accounts) with the garbage collector off, then freeze it out of
    the collector's reach: every full collection walked it (23 of them cost 12 s of the
    index's 66-s build). Refcounting still frees it when it is dropped; what a previous
    build froze is handed back to the collector first."""
    with collector_paused():
        gc.unfreeze()
        try:
            yield
        finally:
            gc.freeze()


def _account_record(a: AccountRow) -> AccountRecord:
    return AccountRecord(a.connection, a.external_id, a.name, a.domain, a.country, a.duns,
                         a.vat_id)
