"""Full matching and rules over a very large SQLite store, without holding every row.

The lean path: matching reads only the seven columns it needs into
:class:`rules.matching.AccountRecord`; its links go to a link table, one row per account
in customer order; the records then stream back joined to it (one index seek per
account, no sort), each row straight into a fact (:class:`sync.snapshot.FactMaker`, the
code a normal evaluation builds its facts with), one customer at a time, are evaluated
and dropped. Only the rules' results stay in memory. Values are decoded as the store's
column types decode them (UTC timestamps, dates, NUMERIC(20, 4) as Decimal); dates and
amounts through a bounded memo, as a store holds few distinct ones.

With ``workers=2`` the second core helps: a second process, started before matching (so
its imports cost nothing), loads and normalises half of the accounts for matching, then
evaluates the second half of the customers (their links in a scratch SQLite file) from
its own read connection to the store while this one evaluates the first. ``consume``
then runs in both processes and must pickle; each process's copy comes back as it ended
(``ScaleRun.consumers``).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from itertools import chain
from typing import Any, cast

from rules.engine import Evaluation, evaluate_customer
from rules.fuzzy import fuzzy_candidates
from rules.matching import (
    AccountRecord,
    FuzzyFound,
    MatchResult,
    MatchSettings,
    match_accounts,
    match_features,
)
from rules.model import AccountFact, OpportunityFact, Policy
from rules.names import RecordFeatures
from sync.cycle import Runtime
from sync.snapshot import FactMaker, fact_makers

Group = tuple[str | None, list[AccountFact], list[OpportunityFact]]
Ledgers = Mapping[str, Mapping[tuple[str, str, str], Any]]
Key = tuple[str, str]

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


def account_records(store: Any, connections: Sequence[str]) -> list[AccountRecord]:
    """What matching needs of every live account of ``connections``, in store order."""
    conn = _raw(store)
    try:
        return _account_records(conn, connections, None, None)
    finally:
        conn.close()


def _account_records(conn: Any, connections: Sequence[str], start: Key | None,
                     end: Key | None) -> list[AccountRecord]:
    """... those whose (connection, external id) is in [start, end) (None: open end)."""
    marks = ",".join("?" * len(connections))
    sql = ("SELECT connection, external_id, name, domain, country, duns, vat_id FROM account"
           f" WHERE NOT deleted AND connection IN ({marks})")
    args: list[str] = list(connections)
    if start is not None:
        sql += " AND (connection, external_id) >= (?, ?)"
        args.extend(start)
    if end is not None:
        sql += " AND (connection, external_id) < (?, ?)"
        args.extend(end)
    return [AccountRecord(*row) for row in conn.execute(sql + " ORDER BY id", args)]


def _features(conn: Any, connections: Sequence[str], start: Key | None, end: Key | None
              ) -> RecordFeatures:
    return RecordFeatures(_account_records(conn, connections, start, end))


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


def write_links(conn: Any, customers: Customers, *, schema: str = "temp") -> tuple[int, int]:
    """``customers`` into ``schema.scale_link`` (ord, connection, external_id,
    customer_id), one row per account in customer order; its rowid range."""
    conn.execute(f"DROP TABLE IF EXISTS {schema}.scale_link")
    conn.execute(f"CREATE TABLE {schema}.scale_link "
                 "(ord INTEGER, connection TEXT, external_id TEXT, customer_id TEXT)")
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO {schema}.scale_link VALUES (?, ?, ?, ?)",
        ((ord_, c, e, customer) for ord_, (customer, keys) in enumerate(customers)
         for c, e in keys))
    conn.execute("COMMIT")
    return 1, sum(len(keys) for _, keys in customers)


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


def stream_groups(
    store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str],
    ledgers: Ledgers | None = None, *, release: bool = False,
) -> Iterator[Group]:
    """Each matched customer's facts, one customer at a time (customers without a link
    are left out: the caller evaluates the few unmatched deals the normal way). With
    ``release`` the ``links`` dict is emptied once the database holds it."""
    makers = fact_makers({rt.name: rt for rt in runtimes}, ledgers or {})
    conn = _raw(store)
    try:
        bounds = write_links(conn, customers_of(links, release=release))
        yield from stream_part(conn, "temp", bounds, makers)
        conn.execute("DROP TABLE IF EXISTS temp.scale_link")
    finally:
        conn.close()


@dataclass(slots=True)
class ScaleRun:
    """What :func:`evaluate_at_scale` did; ``match`` and ``evaluation`` only when kept.
    ``consumers``: with workers, each part's ``consume`` as it ended in its process."""

    accounts: int
    customers: int
    review_items: int
    match: MatchResult | None
    evaluation: Evaluation | None
    consumers: list[Any] = field(default_factory=list)
    # per worker process: CPU seconds, peak RSS in MB (this process's are the caller's),
    # and the wall seconds its share of the rules took
    worker_usage: list[tuple[float, float, float]] = field(default_factory=list)


def evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None = None,
    progress: Callable[[str], None] | None = None,
    consume: Callable[[Evaluation], None] | None = None, batch: int = 4000,
    workers: int = 1,
) -> ScaleRun:
    """Match every account, then evaluate every matched customer, streaming.

    Without ``consume`` everything is kept and returned (small stores, tests). With it,
    each ``batch`` of customers is evaluated into a fresh :class:`Evaluation` handed to
    ``consume`` (which plans and writes, or counts) and dropped, and the match result is
    not kept: memory stays flat whatever the store holds. ``workers`` > 1 needs
    ``consume`` (see the module docstring)."""
    if workers > 1 and consume is None:
        raise ValueError("workers evaluate into consume: pass one")
    tell = progress or (lambda _stage: None)
    collecting = gc.isenabled()
    gc.disable()  # millions of acyclic objects: generation scans would cost a third
    pool = _Workers(workers - 1) if workers > 1 else None
    try:
        return _evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now,
                                  previous=previous, tell=tell, consume=consume, batch=batch,
                                  pool=pool)
    finally:
        if pool is not None:
            pool.close()
        if collecting:
            gc.enable()
        gc.collect()


def evaluate_groups_into(
    groups: Iterator[Group], policy: Policy, now: datetime,
    consume: Callable[[Evaluation], None] | None, batch: int,
) -> Evaluation | None:
    """Evaluate ``groups``; handed to ``consume`` every ``batch`` customers, or returned."""
    result = Evaluation()
    in_batch = 0
    for customer, accounts, opportunities in groups:
        evaluate_customer(customer, accounts, opportunities, policy, now, into=result)
        in_batch += 1
        if consume is not None and in_batch >= batch:
            consume(result)
            result, in_batch = Evaluation(), 0
    if consume is not None:
        consume(result)
        return None
    return result


def _evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None, tell: Callable[[str], None],
    consume: Callable[[Evaluation], None] | None, batch: int, pool: _Workers | None,
) -> ScaleRun:
    connections = [rt.name for rt in runtimes]
    match: MatchResult | None
    if pool is None:
        records = account_records(store, connections)
        tell("loaded_accounts")
        match = match_accounts(records, previous=previous or {}, settings=settings)
        del records
    else:  # each process loads and normalises its share of the accounts
        features, fuzzy = pool.features(store, connections, settings, tell)
        match = match_features(features, previous=previous or {}, settings=settings,
                               fuzzy=fuzzy)
        del features
    assert match is not None
    links = {key: link.customer_id for key, link in match.links.items()}
    run = ScaleRun(accounts=len(links), customers=len(set(links.values())),
                   review_items=len(match.review), match=match, evaluation=None)
    if consume is not None:
        run.match = match = None
    tell("matched")
    if pool is None:
        groups = stream_groups(store, runtimes, links, release=consume is not None)
        run.evaluation = evaluate_groups_into(groups, policy, now, consume, batch)
    else:
        assert consume is not None  # checked by evaluate_at_scale
        run.consumers, run.worker_usage = pool.evaluate(
            store, runtimes, links, policy=policy, now=now, consume=consume, batch=batch,
            tell=tell)
    tell("evaluated")
    return run


def _store_path(store: Any) -> str:
    if store.dialect != "sqlite" or not store.engine.url.database:
        raise ValueError("workers read a SQLite store file")
    return str(store.engine.url.database)


class _Workers:
    """Processes that evaluate parts of the link table; started at once (their imports
    overlap the caller's loading and matching), each told its part once links exist."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh, small process
        self.pipes: list[Any] = []
        self.processes: list[Any] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_work, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
        self.scratch = tempfile.mkdtemp(prefix="channelsync-scale-")

    def features(self, store: Any, connections: Sequence[str], settings: MatchSettings,
                 tell: Callable[[str], None]) -> tuple[RecordFeatures, FuzzyFound]:
        """The accounts' matching features, normalised in equal shares of their keys,
        the first share here, the others in the workers at the same time; and the close-name
        candidates, which the first worker then finds while this process matches the rest."""
        path = _store_path(store)
        marks = ",".join("?" * len(connections))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            count = conn.execute(f"SELECT count(*) FROM account WHERE connection IN ({marks})",
                                 connections).fetchone()[0]
            cuts: list[Key | None] = []
            for part in range(1, len(self.pipes) + 1):
                found = conn.execute(
                    "SELECT connection, external_id FROM account"
                    f" WHERE connection IN ({marks}) ORDER BY connection, external_id"
                    " LIMIT 1 OFFSET ?", (*connections, count * part // (len(self.pipes) + 1))
                ).fetchone()
                cuts.append(tuple(found) if found else None)
            bounds = list(zip([None, *cuts], [*cuts, None], strict=True))
            for n, (pipe, (start, end)) in enumerate(zip(self.pipes, bounds[1:], strict=True)):
                pipe.send(("features", path, list(connections), start, end, settings, n == 0))
            records = _account_records(conn, connections, *bounds[0])
        finally:
            conn.close()
        tell("loaded_accounts")
        parts = [RecordFeatures(records)]
        del records
        for pipe in self.pipes[1:]:
            parts.append(self._answer(pipe))
        # the first worker needs every other share's names, in key order around its own
        before, after = parts[:1], parts[1:]
        self.pipes[0].send(("names", *(
            [name for part in side for name in getattr(part, field)]
            for side in (before, after) for field in ("name", "compact", "country"))))
        parts.insert(1, self._answer(self.pipes[0]))
        first = self.pipes[0]
        return RecordFeatures.joined(parts), lambda: self._answer(first)

    @staticmethod
    def _answer(pipe: Any) -> Any:
        try:
            return pipe.recv()
        except EOFError:
            raise RuntimeError("a scale worker process died") from None

    def evaluate(
        self, store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str], *,
        policy: Policy, now: datetime, consume: Callable[[Evaluation], None], batch: int,
        tell: Callable[[str], None],
    ) -> tuple[list[Any], list[tuple[float, float, float]]]:
        path = _store_path(store)
        # no connector crosses a process boundary: facts need the rest
        light = [replace(rt, connector=cast(Any, None)) for rt in runtimes]
        # this process's share is smaller: it writes its own link table after the
        # workers', while they already evaluate (about a tenth of the time a share takes)
        parts = shares(customers_of(links, release=True), len(self.pipes) + 1, first=0.9)
        # the workers' shares first, each in its own file (no reader blocks a writer),
        # so they start while this process writes its own
        for part in range(len(parts) - 1, 0, -1):
            scratch = os.path.join(self.scratch, f"links-{part}.db")
            conn = sqlite3.connect(scratch, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = OFF")
                conn.execute("PRAGMA synchronous = OFF")
                bounds = write_links(conn, parts[part], schema="main")
            finally:
                conn.close()
            parts[part] = []
            self.pipes[part - 1].send(("rules", path, scratch, bounds, light, policy, now,
                                       consume, batch))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            bounds = write_links(conn, parts[0])
            del parts
            tell("links_written")
            makers = fact_makers({rt.name: rt for rt in runtimes}, {})
            evaluate_groups_into(stream_part(conn, "temp", bounds, makers), policy, now,
                                 consume, batch)
        finally:
            conn.close()
        consumers, usage = [consume], []
        for pipe in self.pipes:
            ended, *used = self._answer(pipe)
            consumers.append(ended)
            usage.append(tuple(used))
        return consumers, usage

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _work(pipe: Any) -> None:
    """A worker process: normalise the accounts it is told (optional), then evaluate the
    part of the customers it is told; send back the features, then its consumer and usage."""
    gc.disable()  # as in the caller: acyclic objects by the million
    try:
        job = pipe.recv()
        if job[0] == "features":
            _, path, connections, start, end, settings, finds_names = job
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                mine = _features(conn, connections, start, end)
            finally:
                conn.close()
            if finds_names:  # the close-name candidates over every share
                # (the others' names first: both ends sending at once would block)
                _, names, compacts, countries, names_after, compacts_after, countries_after = (
                    pipe.recv())
                pipe.send(mine)
                pipe.send(fuzzy_candidates(
                    [*names, *mine.name, *names_after],
                    [*compacts, *mine.compact, *compacts_after],
                    [*countries, *mine.country, *countries_after],
                    review_floor=settings.fuzzy_review,
                    min_typo_length=settings.min_typo_length, max_block=settings.max_block))
            else:
                pipe.send(mine)
            del mine
            job = pipe.recv()
    except EOFError:
        return  # the caller stopped before it had a part for us
    _, path, scratch, bounds, runtimes, policy, now, consume, batch = job
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS scale", (scratch,))
        makers = fact_makers({rt.name: rt for rt in runtimes}, {})
        evaluate_groups_into(stream_part(conn, "scale", bounds, makers), policy, now,
                             consume, batch)
    finally:
        conn.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send((consume, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
               time.perf_counter() - started))
    pipe.close()
