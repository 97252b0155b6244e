"""Full matching and rules over a very large SQLite store, without holding every row.

The lean path: matching reads only the seven columns it needs into
:class:`rules.matching.AccountRecord`; its links go to a temporary table in the same
SQLite connection; the records then stream back joined to their customer, in customer
order, and each customer's rows become facts (through :func:`sync.snapshot.build_snapshot`,
so the facts are exactly the ones a normal evaluation builds), are evaluated and dropped.
Only the rules' results stay in memory. Values are decoded as the store's column types
decode them (UTC timestamps, dates, NUMERIC(20, 4) as Decimal), memoised: a store holds
few distinct instants.
"""

from __future__ import annotations

import gc
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rules.engine import Evaluation, evaluate_customer
from rules.matching import AccountRecord, MatchResult, MatchSettings, match_accounts
from rules.model import AccountFact, OpportunityFact, Policy
from state.rows import AccountRow, OpportunityRow
from sync.cycle import Runtime
from sync.snapshot import build_snapshot

# Only the columns build_snapshot reads (a test compares the facts with the normal path):
# fewer values to decode, and no per-row bookkeeping timestamps to parse.
_ACCOUNT = ("connection", "external_id", "name", "country", "channel_owner", "owner_user",
            "partner_id", "deleted")
_OPPORTUNITY = ("connection", "external_id", "name", "account_ref", "amount", "currency",
                "stage_category", "close_date", "created_at", "modified_at",
                "last_activity_at", "owner_user", "registered_by", "registered_at",
                "registration_expires_at", "registration_status", "registration_decision",
                "reassign_to", "deleted", "vendor_modified_at")
# The rows as named tuples: build_snapshot reads them by attribute name, and a tuple is
# built in C, where a frozen dataclass of 26 fields sets each field in Python.
_AccountTuple = namedtuple("_AccountTuple", _ACCOUNT)  # type: ignore[misc]  # dynamic fields
_OpportunityTuple = namedtuple("_OpportunityTuple", _OPPORTUNITY)  # type: ignore[misc]  # same
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
        build = row_type._make if hasattr(row_type, "_make") else (lambda v: row_type(*v))

        def make(raw: tuple[Any, ...]) -> Any:
            values = list(raw)
            for i, convert in plan:
                values[i] = convert(values[i])
            return build(values)

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
    store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str],
    ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None, *,
    release: bool = False, batch: int = 4000,
) -> Iterator[Group]:
    """Each matched customer's facts, one customer at a time (customers without a link
    are left out: the caller evaluates the few unmatched deals the normal way). With
    ``release`` the ``links`` dict is emptied once the database holds it. Facts are built
    ``batch`` customers at a time (one ``build_snapshot`` call each: a call has a cost)."""
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
        if release:
            links.clear()
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
        accounts = _rows(conn, account_sql, decoder.row_maker(_ACCOUNT, _AccountTuple))
        opportunities = _rows(conn, opportunity_sql,
                              decoder.row_maker(_OPPORTUNITY, _OpportunityTuple))
        pending: list[tuple[str, list[AccountRow], list[OpportunityRow]]] = []
        for group in _merged(accounts, opportunities):
            pending.append(group)
            if len(pending) >= batch:
                yield from _facts(pending, by_name, ledgers)
                pending = []
        if pending:
            yield from _facts(pending, by_name, ledgers)
        conn.execute("DROP TABLE IF EXISTS temp.scale_link")
    finally:
        conn.close()


def _merged(accounts: Iterator[tuple[str, AccountRow]],
            opportunities: Iterator[tuple[str, OpportunityRow]]
            ) -> Iterator[tuple[str, list[AccountRow], list[OpportunityRow]]]:
    """Join two streams ordered by customer id into (customer, accounts, deals)."""
    next_opp = next(opportunities, None)
    current: str | None = None
    group_accounts: list[AccountRow] = []
    group_opps: list[OpportunityRow] = []
    for cid, row in accounts:
        if cid != current:
            if current is not None:
                while next_opp is not None and next_opp[0] < current:
                    next_opp = next(opportunities, None)  # cannot be: links are accounts'
                while next_opp is not None and next_opp[0] == current:
                    group_opps.append(next_opp[1])
                    next_opp = next(opportunities, None)
                yield current, group_accounts, group_opps
            current, group_accounts, group_opps = cid, [], []
        group_accounts.append(row)
    if current is not None:
        while next_opp is not None and next_opp[0] == current:
            group_opps.append(next_opp[1])
            next_opp = next(opportunities, None)
        yield current, group_accounts, group_opps


def _facts(pending: list[tuple[str, list[AccountRow], list[OpportunityRow]]],
           runtimes: Mapping[str, Runtime],
           ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]] | None) -> Iterator[Group]:
    local: dict[tuple[str, str], str] = {}
    all_accounts: list[AccountRow] = []
    all_opps: list[OpportunityRow] = []
    for customer, accounts, opportunities in pending:
        for a in accounts:
            local[(a.connection, a.external_id)] = customer
        all_accounts.extend(accounts)
        all_opps.extend(opportunities)
    snapshot = build_snapshot(accounts=all_accounts, opportunities=all_opps, links=local,
                              runtimes=runtimes, ledgers=ledgers or {})
    del all_accounts, all_opps
    groups: dict[str, Group] = {c: (c, [], []) for c, _, _ in pending}
    for fact in snapshot.accounts:
        groups[fact.customer_id or ""][1].append(fact)
    for opp in snapshot.opportunities:
        groups[opp.customer_id or ""][2].append(opp)
    yield from groups.values()


@dataclass(slots=True)
class ScaleRun:
    """What :func:`evaluate_at_scale` did; ``match`` and ``evaluation`` only when kept."""

    accounts: int
    customers: int
    review_items: int
    match: MatchResult | None
    evaluation: Evaluation | None


def evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None = None,
    progress: Callable[[str], None] | None = None,
    consume: Callable[[Evaluation], None] | None = None, batch: int = 4000,
) -> ScaleRun:
    """Match every account, then evaluate every matched customer, streaming.

    Without ``consume`` everything is kept and returned (small stores, tests). With it,
    each ``batch`` of customers is evaluated into a fresh :class:`Evaluation` handed to
    ``consume`` (which plans and writes, or counts) and dropped, and the match result is
    not kept: memory stays flat whatever the store holds."""
    tell = progress or (lambda _stage: None)
    collecting = gc.isenabled()
    gc.disable()  # millions of acyclic objects: generation scans would cost a third
    try:
        return _evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now,
                                  previous=previous, tell=tell, consume=consume, batch=batch)
    finally:
        if collecting:
            gc.enable()
        gc.collect()


def _evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None, tell: Callable[[str], None],
    consume: Callable[[Evaluation], None] | None, batch: int,
) -> ScaleRun:
    records = account_records(store, [rt.name for rt in runtimes])
    tell("loaded_accounts")
    match: MatchResult | None = match_accounts(records, previous=previous or {},
                                               settings=settings)
    del records
    assert match is not None
    links = {key: link.customer_id for key, link in match.links.items()}
    run = ScaleRun(accounts=len(links), customers=len(set(links.values())),
                   review_items=len(match.review), match=match, evaluation=None)
    if consume is not None:
        run.match = match = None
    tell("matched")
    result = Evaluation()
    in_batch = 0
    for customer, accounts, opportunities in stream_groups(store, runtimes, links,
                                                           release=consume is not None,
                                                           batch=batch):
        evaluate_customer(customer, accounts, opportunities, policy, now, into=result)
        in_batch += 1
        if consume is not None and in_batch >= batch:
            consume(result)
            result, in_batch = Evaluation(), 0
    if consume is not None:
        consume(result)
    else:
        run.evaluation = result
    tell("evaluated")
    return run
