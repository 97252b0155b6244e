"""The store side of the scale path: the accounts' matching features, the link table, and
every matched customer streamed back from it as facts into the rules.

Matching reads each account's stored keys, and the columns it needs to make them again
where they are not current (:meth:`rules.features.RecordFeatures.from_rows`); its links
go to a link table, one row per account in customer order; the records then stream back
joined to it (one index seek per account, no sort), each row straight into a fact
(:class:`sync.snapshot.FactMaker`, the code a normal evaluation builds its facts with),
one customer at a time, in rowid ranges of a batch of customers, each range's ledger and
open outbox values read first. Values are decoded as the store's column types decode
them (UTC timestamps, dates, NUMERIC(20, 4) as Decimal); dates and amounts through a
bounded memo, as a store holds few distinct ones. :func:`evaluate_by_keys` does the same
through the store's queries, for any database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import chain
from typing import Any

from rules.engine import Evaluation, evaluate_customer, group_by_customer
from rules.features import KEYS_VERSION, RecordFeatures
from rules.model import AccountFact, OpportunityFact, Policy
from state.tables import OPEN_OUTBOX_STATES
from sync.cycle import Runtime
from sync.snapshot import FactMaker, build_snapshot

Group = tuple[str | None, list[AccountFact], list[OpportunityFact]]
Written = dict[str, dict[tuple[str, str, str], Any]]  # connection -> (entity, id, field) -> value
Key = tuple[str, str]


@dataclass(slots=True)
class Batch:
    """A run of evaluated customers: the rules' verdicts, the facts they came from, and
    what we wrote to those records per connection (ledger, open outbox values), which
    the planner compares with."""

    evaluation: Evaluation
    accounts: list[AccountFact]
    opportunities: list[OpportunityFact]
    ledgers: Written
    in_flight: Written

# Only the columns the facts hold (a test compares them with the normal path's): fewer
# values to decode, and no per-row bookkeeping timestamps to parse.
_ACCOUNT_SQL = (
    "SELECT l.ord, l.customer_id, a.connection, a.external_id, a.name, a.country,"
    " a.channel_owner, a.partner_id, a.owner_user"
    " FROM {links} l JOIN account a"
    " ON a.connection = l.connection AND a.external_id = l.external_id"
    " WHERE l.rowid BETWEEN ? AND ? AND NOT a.deleted ORDER BY l.rowid")
_OPPORTUNITY_SQL = (
    "SELECT l.ord, o.connection, o.external_id, o.name, o.account_ref, o.amount, o.currency,"
    " o.stage_category, o.close_date, o.created_at || '+00:00',"
    " coalesce(o.modified_at, o.vendor_modified_at) || '+00:00',"
    " o.last_activity_at || '+00:00', o.owner_user,"
    " o.registered_by, o.registered_at || '+00:00', o.registration_expires_at,"
    " o.registration_status,"
    " o.registration_decision, o.reassign_to"
    " FROM {links} l JOIN opportunity o"
    " ON o.connection = l.connection AND o.account_ref = l.external_id"
    " WHERE l.rowid BETWEEN ? AND ? AND NOT o.deleted ORDER BY l.rowid, o.id")


class _Memo(dict[Any, Any]):
    """Storage value -> decoded value, each distinct value decoded once (None stays None);
    a hit is one dict lookup in C. For columns of few distinct values (dates, amounts):
    past ``limit`` entries it starts afresh, so memory stays bounded whatever they hold."""

    def __init__(self, decode: Callable[[Any], Any], limit: int = 100_000) -> None:
        super().__init__({None: None})
        self.decode, self.limit = decode, limit

    def __missing__(self, raw: Any) -> Any:
        if len(self) > self.limit:
            self.clear()
            self[None] = None
        value = self[raw] = self.decode(raw)
        return value


def _amount(value: float | int) -> Decimal:
    return Decimal(f"{value:.4f}")


def _raw(store: Any) -> Any:
    if store.dialect != "sqlite":
        raise ValueError("the lean scale path reads SQLite directly; use evaluate_store")
    return store.engine.raw_connection()


def account_features(store: Any, connections: Sequence[str]) -> RecordFeatures:
    """The matching features of every live account of ``connections``: stored keys where
    current, the other accounts normalised (``made``)."""
    if store.dialect != "sqlite":
        return RecordFeatures.from_stored(store.account_inputs_and_keys(connections,
                                                                        KEYS_VERSION))
    conn = _raw(store)
    try:
        return features_in(conn, connections, None, None)
    finally:
        conn.close()


# Store.account_inputs_and_keys for a raw SQLite connection, each account's fields only
# where its keys are not current, cut to a range of keys; a scan in rowid order ("+" keeps
# SQLite off the key index: row by row through it took 4 times as long), sorted by key in
# Python
_KEYED_SQL = (
    "SELECT id, changed_generation, connection, external_id, current,"
    " CASE WHEN current THEN k_country ELSE name END,"
    " CASE WHEN current THEN k_duns ELSE domain END,"
    " CASE WHEN current THEN k_vat ELSE country END,"
    " CASE WHEN current THEN k_domain ELSE duns END,"
    " CASE WHEN current THEN k_name ELSE vat_id END,"
    " CASE WHEN current THEN k_legal END"
    " FROM (SELECT a.id, a.changed_generation, a.connection, a.external_id, a.name, a.domain,"
    " a.country, a.duns, a.vat_id,"
    " coalesce(k.generation = a.changed_generation AND k.version = ?, 0) AS current,"
    " k.country AS k_country, k.duns AS k_duns, k.vat AS k_vat, k.domain AS k_domain,"
    " k.name AS k_name, k.legal AS k_legal"
    " FROM account a LEFT JOIN account_match_key k ON k.account_id = a.id"
    " WHERE NOT a.deleted AND +a.connection IN ({marks}){range}) ORDER BY id")


def features_in(conn: Any, connections: Sequence[str], start: Key | None, end: Key | None
                ) -> RecordFeatures:
    """:func:`account_features` of the accounts whose (connection, external id) is in
    [start, end) (None: open end), over a raw SQLite connection."""
    args: list[Any] = [KEYS_VERSION, *connections]
    cut = ""
    if start is not None:
        cut += " AND (a.connection, a.external_id) >= (?, ?)"
        args.extend(start)
    if end is not None:
        cut += " AND (a.connection, a.external_id) < (?, ?)"
        args.extend(end)
    sql = _KEYED_SQL.format(marks=",".join("?" * len(connections)), range=cut)
    return RecordFeatures.from_rows(conn.execute(sql, args))


Customers = list[tuple[str, list[Key]]]  # (customer id, its accounts' keys)


def customers_of(links: dict[Key, str], *, release: bool = False) -> Customers:
    """The links grouped by customer; ``release`` empties ``links`` on the way (its
    memory is the caller's largest)."""
    members: dict[str, list[Key]] = {}
    for key, customer in links.items():
        found = members.get(customer)
        if found is None:
            members[customer] = [key]
        else:
            found.append(key)
    if release:
        links.clear()
    return list(members.items())


def shares(customers: Customers, parts: int, *, first: float = 1.0) -> list[Customers]:
    """``parts`` runs of customers in order, the first ``first`` times as large as each
    of the others (which are equal)."""
    size = len(customers) / (parts - 1 + first)
    cuts = [0, *(round(size * (first + i)) for i in range(parts - 1)), len(customers)]
    return [customers[cuts[i]:cuts[i + 1]] for i in range(parts)]


def write_links(conn: Any, customers: Customers, *, schema: str = "temp",
                batch: int | None = None) -> list[tuple[int, int]]:
    """``customers`` into ``schema.scale_link`` (ord, connection, external_id,
    customer_id), one row per account in customer order; the rowid ranges of each run of
    ``batch`` customers (one range without ``batch``)."""
    conn.execute(f"DROP TABLE IF EXISTS {schema}.scale_link")
    conn.execute(f"CREATE TABLE {schema}.scale_link "
                 "(ord INTEGER, connection TEXT, external_id TEXT, customer_id TEXT)")
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO {schema}.scale_link VALUES (?, ?, ?, ?)",
        ((ord_, c, e, customer) for ord_, (customer, keys) in enumerate(customers)
         for c, e in keys))
    conn.execute("COMMIT")
    return link_ranges(customers, batch)


def link_ranges(customers: Customers, batch: int | None) -> list[tuple[int, int]]:
    """The link table's rowid ranges (1-based, inclusive) of each run of ``batch``
    customers, as :func:`write_links` lays them out."""
    step = batch or max(len(customers), 1)
    ranges, row = [], 1
    for start in range(0, len(customers), step):
        count = sum(len(keys) for _, keys in customers[start:start + step])
        ranges.append((row, row + count - 1))
        row += count
    return ranges


def _fetched(conn: Any, sql: str, bounds: tuple[int, int], size: int = 20_000
             ) -> Iterator[tuple[Any, ...]]:
    cursor = conn.execute(sql, bounds)
    return chain.from_iterable(iter(lambda: cursor.fetchmany(size), []))


def stream_part(conn: Any, schema: str, bounds: tuple[int, int],
                makers: Mapping[str, FactMaker]) -> Iterator[Group]:
    """Each customer of ``schema.scale_link`` whose rows are in the rowid range
    ``bounds``, with its facts, in link table order."""
    links = f"{schema}.scale_link"
    # instants are nearly all distinct: parsed as they come (the query appends the UTC
    # offset the store leaves out), no memo to fill
    instant = datetime.fromisoformat
    days, amounts = _Memo(date.fromisoformat), _Memo(_amount)
    opportunities = _fetched(conn, _OPPORTUNITY_SQL.format(links=links), bounds)
    upcoming = next(opportunities, None)
    current: int | None = None
    customer: str | None = None
    accounts: list[AccountFact] = []
    for ord_, cid, connection, *values in chain(
            _fetched(conn, _ACCOUNT_SQL.format(links=links), bounds), [(None, None, "")]):
        if ord_ != current or ord_ is None:
            if current is not None:
                while upcoming is not None and upcoming[0] < current:
                    upcoming = next(opportunities, None)  # its account went since: not here
                opps: list[OpportunityFact] = []
                while upcoming is not None and upcoming[0] == current:
                    (_, conn_name, ext, name, ref, amount, currency, stage, close, created,
                     modified, activity, owner, registered_by, registered_at, expires,
                     status, decision, reassign) = upcoming
                    opps.append(makers[conn_name].opportunity(
                        ext, name, ref, amounts[amount], currency, stage, days[close],
                        created and instant(created), modified and instant(modified),
                        activity and instant(activity), owner, registered_by,
                        registered_at and instant(registered_at), days[expires], status,
                        decision, reassign, False, customer))
                    upcoming = next(opportunities, None)
                yield customer, accounts, opps
            if ord_ is None:
                break
            current, customer, accounts = ord_, cid, []
        ext, name, country, channel_owner, partner_id, owner_user = values
        accounts.append(makers[connection].account(
            ext, name, country, channel_owner, partner_id, owner_user, False, customer))


# CROSS JOIN keeps SQLite's join order: links, then each account's deals by account ref,
# then their entries by key (left to choose, it scanned a connection's every deal entry
# for each link: quadratic once the ledger fills)
_WRITTEN_SQL = (
    "SELECT w.connection, w.entity, w.external_id, w.field, w.value"
    " FROM {links} l CROSS JOIN {table} w ON w.connection = l.connection"
    " AND w.entity = 'account' AND w.external_id = l.external_id{only}"
    " WHERE l.rowid BETWEEN ? AND ?"
    " UNION ALL"
    " SELECT w.connection, w.entity, w.external_id, w.field, w.value"
    " FROM {links} l CROSS JOIN opportunity o"
    " ON o.connection = l.connection AND o.account_ref = l.external_id"
    " CROSS JOIN {table} w ON w.connection = o.connection"
    " AND w.entity = 'opportunity' AND w.external_id = o.external_id{only}"
    " WHERE l.rowid BETWEEN ? AND ? AND NOT o.deleted")
# the partial unique index of open outbox items: the same condition lets SQLite use it
_OPEN = f" AND w.state IN ({', '.join(repr(s) for s in OPEN_OUTBOX_STATES)})"


def written_in(conn: Any, schema: str, bounds: tuple[int, int]) -> tuple[Written, Written]:
    """What we wrote to the records of the customers in the rowid range ``bounds``: (the
    ledger, the values of open outbox items), per connection."""
    found: list[Written] = []
    for table, only in (("ledger", ""), ("outbox", _OPEN)):
        sql = _WRITTEN_SQL.format(links=f"{schema}.scale_link", table=table, only=only)
        out: Written = {}
        for connection, entity, external_id, field, value in conn.execute(sql, bounds * 2):
            # JSON text, but the column's numeric affinity stored a bare number as one
            out.setdefault(connection, {})[(entity, external_id, field)] = (
                json.loads(value) if value.__class__ is str else value)
        found.append(out)
    return found[0], found[1]


def evaluate_ranges(
    conn: Any, schema: str, ranges: Sequence[tuple[int, int]], makers: Mapping[str, FactMaker],
    policy: Policy, now: datetime, consume: Callable[[Batch], None] | None, *,
    written: bool = False,
) -> Evaluation | None:
    """Evaluate the customers of each rowid range of ``schema.scale_link``, handed to
    ``consume`` a range at a time, or returned together. With ``written`` the ledger and
    open outbox values of each range are read first (facts need them: whose value is
    an owner or an expiry date)."""
    whole = Evaluation() if consume is None else None
    for bounds in ranges:
        ledgers, writing = written_in(conn, schema, bounds) if written else ({}, {})
        for name, maker in makers.items():
            maker.use(ledgers.get(name, {}), writing.get(name))
        # a batch keeps its registrations: the scorecards count them as assessed
        result = whole if whole is not None else Evaluation(keep_registrations=True)
        accounts: list[AccountFact] = []
        opportunities: list[OpportunityFact] = []
        for customer, group_accounts, group_opportunities in stream_part(
                conn, schema, bounds, makers):
            evaluate_customer(customer, group_accounts, group_opportunities, policy, now,
                              into=result)
            if consume is not None:
                accounts += group_accounts
                opportunities += group_opportunities
        if consume is not None:
            consume(Batch(result, accounts, opportunities, ledgers, writing))
    return whole


def evaluate_by_keys(
    store: Any, runtimes: Sequence[Runtime], customers: Customers, policy: Policy,
    now: datetime, consume: Callable[[Batch], None] | None, batch: int, *,
    written: bool = False,
) -> Evaluation | None:
    """:func:`evaluate_ranges` through the store's own queries, for any database: each
    run of ``batch`` customers loaded by its accounts' keys."""
    by_name = {rt.name: rt for rt in runtimes}
    whole = Evaluation() if consume is None else None
    for start in range(0, len(customers), batch):
        links = {key: customer for customer, keys in customers[start:start + batch]
                 for key in keys}
        accounts = [a for a in store.accounts_by_keys(links) if not a.deleted]
        opportunities = store.opportunities_of_accounts(links)
        ledgers: Written = {}
        writing: Written = {}
        if written:
            keys: dict[str, list[tuple[str, str]]] = {}
            for a in accounts:
                keys.setdefault(a.connection, []).append(("account", a.external_id))
            for o in opportunities:
                keys.setdefault(o.connection, []).append(("opportunity", o.external_id))
            ledgers, writing = store.written_values(keys)
        snapshot = build_snapshot(accounts=accounts, opportunities=opportunities, links=links,
                                  runtimes=by_name, ledgers=ledgers, in_flight=writing)
        result = whole if whole is not None else Evaluation(keep_registrations=True)
        for customer, (group_accounts, group_opportunities) in group_by_customer(
                snapshot).items():
            evaluate_customer(customer if isinstance(customer, str) else None,
                              group_accounts, group_opportunities, policy, now, into=result)
        if consume is not None:
            consume(Batch(result, list(snapshot.accounts), list(snapshot.opportunities),
                          ledgers, writing))
    return whole
