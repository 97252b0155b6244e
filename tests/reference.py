"""The load-everything paths the streamed full evaluation is checked against: every
account matched at once from its store rows, and every matched customer's facts read
back one customer at a time (without batches, planning or a second process)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rules.matching import AccountRecord, MatchResult, MatchSettings, match_accounts
from state.rows import AccountRow
from sync.cycle import Runtime
from sync.scale_stream import Group, customers_of, stream_part, write_links
from sync.snapshot import as_decision, fact_makers


def match_customers(
    store: Any, accounts: Sequence[AccountRow], settings: MatchSettings
) -> MatchResult:
    """Match ``accounts`` with the store's verdicts, keeping its customer ids."""
    previous = {tuple(k): v for k, v in store.customer_links().items()}
    return match_accounts(
        (AccountRecord(a.connection, a.external_id, a.name, a.domain, a.country, a.duns,
                       a.vat_id) for a in accounts),
        decisions=[as_decision(d) for d in store.match_decisions()],
        previous=previous, settings=settings)


def stream_groups(
    store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str]
) -> Iterator[Group]:
    """Each linked customer's facts, one customer at a time, from a SQLite store."""
    makers = fact_makers({rt.name: rt for rt in runtimes}, {})
    conn = store.engine.raw_connection()
    try:
        for bounds in write_links(conn, customers_of(links)):
            yield from stream_part(conn, "temp", bounds, makers)
        conn.execute("DROP TABLE IF EXISTS temp.scale_link")
    finally:
        conn.close()
