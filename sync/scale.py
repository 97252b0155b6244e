"""Full matching and rules over a very large SQLite store, without holding every row.

The lean path: matching reads only the seven columns it needs into
:class:`rules.matching.AccountRecord`; its links go to a temporary table in the same
SQLite connection; the records then stream back joined to their customer, in customer
order, and each customer's rows become facts (through :func:`sync.evaluate.build_snapshot`,
so the facts are exactly the ones a normal evaluation builds), are evaluated and dropped.
Only the rules' results stay in memory. Values are decoded as the store's column types
decode them (UTC timestamps, dates, NUMERIC(20, 4) as Decimal), memoised: a store holds
few distinct instants.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rules.engine import Evaluation, evaluate_customer
from rules.matching import AccountRecord, MatchResult, MatchSettings, match_accounts
from rules.model import AccountFact, OpportunityFact, Policy
from state.rows import AccountRow, OpportunityRow
from sync.cycle import Runtime
from sync.evaluate import build_snapshot

_ACCOUNT = tuple(f.name for f in fields(AccountRow))
_OPPORTUNITY = tuple(f.name for f in fields(OpportunityRow))
_DATETIMES = {"created_at", "modified_at", "deleted_at", "vendor_modified_at", "updated_at",
              "last_activity_at", "registered_at"}
_DATES = {"close_date", "registration_expires_at"}
Group = tuple[str | None, list[AccountFact], list[OpportunityFact]]


class _Decoder:
    """SQLite storage values -> what the store's column types return, memoised."""

    def __init__(self) -> None:
        self.instants: dict[str, datetime] = {}
        self.days: dict[str, date] = {}
        self.amounts: dict[float, Decimal] = {}

    def instant(self, text: str | None) -> datetime | None:
        if text is None:
            return None
        found = self.instants.get(text)
        if found is None:
            found = self.instants[text] = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return found

    def day(self, text: str | None) -> date | None:
        if text is None:
            return None
        found = self.days.get(text)
        if found is None:
            found = self.days[text] = date.fromisoformat(text)
        return found

    def amount(self, value: float | int | None) -> Decimal | None:
        if value is None:
            return None
        found = self.amounts.get(value)
        if found is None:
            found = self.amounts[value] = Decimal(f"{value:.4f}")
        return found

    def row_maker(self, columns: Sequence[str], row_type: type) -> Callable[[tuple[Any, ...]], Any]:
        converters: list[Callable[[Any], Any] | None] = []
        for name in columns:
            if name in _DATETIMES:
                converters.append(self.instant)
            elif name in _DATES:
                converters.append(self.day)
            elif name == "amount":
                converters.append(self.amount)
            elif name == "deleted":
                converters.append(bool)
            else:
                converters.append(None)
        plan = [(i, c) for i, c in enumerate(converters) if c is not None]

        def make(raw: tuple[Any, ...]) -> Any:
            values = list(raw)
            for i, convert in plan:
                values[i] = convert(values[i])
            return row_type(*values)

        return make


def _raw(store: Any) -> Any:
    if store.dialect != "sqlite":
        raise ValueError("the lean scale path reads SQLite directly; use evaluate_store")
    return store.engine.raw_connection()


def account_records(store: Any, connections: Sequence[str]) -> list[AccountRecord]:
    """What matching needs of every live account of ``connections``, in store order."""
    conn = _raw(store)
    try:
        marks = ",".join("?" * len(connections))
        cursor = conn.execute(
            "SELECT connection, external_id, name, domain, country, duns, vat_id FROM account"
            f" WHERE NOT deleted AND connection IN ({marks}) ORDER BY id", tuple(connections))
        return [AccountRecord(*row) for row in cursor]
    finally:
        conn.close()


def _rows(conn: Any, sql: str, make: Callable[[tuple[Any, ...]], Any], size: int = 20_000
          ) -> Iterator[tuple[str, Any]]:
    """(customer id, row) in customer order; the customer id is the query's last column."""
    cursor = conn.execute(sql)
    while batch := cursor.fetchmany(size):
        for raw in batch:
            yield raw[-1], make(raw[:-1])


def stream_groups(
    store: Any, runtimes: Sequence[Runtime], links: Mapping[tuple[str, str], str],
    ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
) -> Iterator[Group]:
    """Each matched customer's facts, one customer at a time (customers without a link
    are left out: the caller evaluates the few unmatched deals the normal way)."""
    by_name = {rt.name: rt for rt in runtimes}
    decoder = _Decoder()
    conn = _raw(store)
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS scale_link "
                     "(connection TEXT, external_id TEXT, customer_id TEXT)")
        conn.execute("DELETE FROM scale_link")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO scale_link VALUES (?, ?, ?)",
                         ((c, e, cid) for (c, e), cid in links.items()))
        conn.execute("COMMIT")
        conn.execute("CREATE INDEX IF NOT EXISTS temp.scale_link_key "
                     "ON scale_link (connection, external_id)")
        conn.execute("CREATE INDEX IF NOT EXISTS temp.scale_link_customer "
                     "ON scale_link (customer_id)")
        account_sql = (
            "SELECT " + ", ".join(f"a.{c}" for c in _ACCOUNT) + ", l.customer_id"
            " FROM scale_link l JOIN account a"
            " ON a.connection = l.connection AND a.external_id = l.external_id"
            " WHERE NOT a.deleted ORDER BY l.customer_id, a.id")
        opportunity_sql = (
            "SELECT " + ", ".join(f"o.{c}" for c in _OPPORTUNITY) + ", l.customer_id"
            " FROM scale_link l JOIN opportunity o"
            " ON o.connection = l.connection AND o.account_ref = l.external_id"
            " WHERE NOT o.deleted ORDER BY l.customer_id, o.id")
        accounts = _rows(conn, account_sql, decoder.row_maker(_ACCOUNT, AccountRow))
        opportunities = _rows(conn, opportunity_sql,
                              decoder.row_maker(_OPPORTUNITY, OpportunityRow))
        tagged = heapq.merge(((cid, 0, row) for cid, row in accounts),
                             ((cid, 1, row) for cid, row in opportunities),
                             key=lambda item: (item[0], item[1]))
        current: str | None = None
        group_accounts: list[AccountRow] = []
        group_opps: list[OpportunityRow] = []
        for cid, kind, row in tagged:
            if cid != current:
                if current is not None:
                    yield _facts(current, group_accounts, group_opps, links, by_name, ledgers)
                current, group_accounts, group_opps = cid, [], []
            (group_accounts if kind == 0 else group_opps).append(row)
        if current is not None:
            yield _facts(current, group_accounts, group_opps, links, by_name, ledgers)
        conn.execute("DROP TABLE IF EXISTS temp.scale_link")
    finally:
        conn.close()


def _facts(customer: str, accounts: list[AccountRow], opportunities: list[OpportunityRow],
           links: Mapping[tuple[str, str], str], runtimes: Mapping[str, Runtime],
           ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]] | None) -> Group:
    local = {(a.connection, a.external_id): customer for a in accounts}
    for o in opportunities:
        local[(o.connection, o.account_ref or "")] = customer
    snapshot = build_snapshot(accounts=accounts, opportunities=opportunities, links=local,
                              runtimes=runtimes, ledgers=ledgers or {})
    return customer, list(snapshot.accounts), list(snapshot.opportunities)


def evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[MatchResult, Evaluation]:
    """Match every account, then evaluate every matched customer, streaming."""
    tell = progress or (lambda _stage: None)
    records = account_records(store, [rt.name for rt in runtimes])
    tell("loaded_accounts")
    match = match_accounts(records, previous=previous or {}, settings=settings)
    del records
    gc.collect()
    tell("matched")
    links = {key: link.customer_id for key, link in match.links.items()}
    result = Evaluation()
    for customer, accounts, opportunities in stream_groups(store, runtimes, links):
        evaluate_customer(customer, accounts, opportunities, policy, now, into=result)
    tell("evaluated")
    return match, result
