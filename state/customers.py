"""End customers, record-to-customer links, human match verdicts, review queue, findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from state.base import StoreBase, batched, chunked, utcnow, with_default
from state.pagewrite import record_table
from state.rows import (
    CustomerLinkRow,
    FindingDelta,
    FindingRow,
    MatchDecisionRow,
    RecordKey,
    ReviewItemIn,
    ReviewItemRow,
)
from state.tables import CustomerLink, EndCustomer, Finding, MatchDecision, ReviewItem, table
from state.types import UtcDateTime

VERDICTS = frozenset({"same", "never"})
_PAIR_COLUMNS = tuple(f"{s}_{p}" for s in "ab" for p in ("connection", "entity", "external_id"))

_REVIEW = table(ReviewItem)
_IS_OPEN = (_REVIEW.c.status == "open",)  # one object: the keyed read's statement is cached by it
_OPEN_REVIEW = sa.select(_REVIEW.c.id, *[_REVIEW.c[n] for n in _PAIR_COLUMNS]).where(*_IS_OPEN)

LinkTuple = tuple[str, str, str, str, str, float]
"""(connection, entity, external_id, customer_id, method, score)"""


class FindingLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def customer_id(self) -> str | None: ...
    @property
    def connection(self) -> str | None: ...
    @property
    def entity(self) -> str | None: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def evidence(self) -> Any: ...


def ordered_pair(a: Sequence[str], b: Sequence[str]) -> tuple[RecordKey, RecordKey]:
    """A pair of record keys in canonical order, so (a, b) and (b, a) are one row."""
    first, second = RecordKey(*a), RecordKey(*b)
    if first == second:
        raise ValueError(f"a record cannot be paired with itself: {first}")
    return (first, second) if first < second else (second, first)


def _pair_values(a: RecordKey, b: RecordKey) -> dict[str, str]:
    return dict(zip(_PAIR_COLUMNS, (*a, *b), strict=True))


class CustomersMixin(StoreBase):
    # -- end customers and links -------------------------------------------------------
    def ensure_customers(self, ids_and_names: Sequence[tuple[str, str]]) -> None:
        """Create missing end customers; refresh display names that changed."""
        if not ids_and_names:
            return
        tbl = table(EndCustomer)
        now = utcnow()
        statement = self._upsert(tbl, ("id",), ("display_name",), ("display_name",))
        params = {cid: {"id": cid, "display_name": name, "created_at": now}
                  for cid, name in ids_and_names}
        with self._write() as conn:
            conn.execute(statement, list(params.values()))

    def name_new_customers(self) -> int:
        """Create the end customers that links name and the store lacks, each named after
        its account that sorts first (links saved in bulk come without names)."""
        tbl, link, acc = table(EndCustomer), table(CustomerLink), record_table("account")
        missing = sa.select(
            link.c.customer_id,
            sa.func.min(sa.func.coalesce(acc.c.name, acc.c.external_id)),
            sa.bindparam("now", utcnow(), type_=UtcDateTime),
        ).join(acc, sa.and_(acc.c.connection == link.c.connection,
                            acc.c.external_id == link.c.external_id)).where(
            link.c.entity == "account",
            ~sa.exists().where(tbl.c.id == link.c.customer_id),
        ).group_by(link.c.customer_id)
        with self._write() as conn:
            return conn.execute(sa.insert(tbl).from_select(
                ["id", "display_name", "created_at"], missing)).rowcount

    def customers(self) -> dict[str, str]:
        """End customer id -> display name."""
        tbl = table(EndCustomer)
        with self._read() as conn:
            rows = conn.execute(sa.select(tbl.c.id, tbl.c.display_name))
            return {customer_id: name for customer_id, name in rows}

    def save_customer_links(self, links: Iterable[LinkTuple], *, replace: bool = False) -> int:
        """Upsert links (one transaction, written 20,000 at a time: a million links as
        parameter rows would cost the better part of a gigabyte); with ``replace`` also
        drop links of records not in ``links``. Returns how many links were given."""
        tbl = table(CustomerLink)
        now = utcnow()
        statement = self._upsert(tbl, ("connection", "entity", "external_id"),
                                 ("customer_id", "method", "score", "updated_at"),
                                 ("customer_id", "method", "score"))
        kept: set[tuple[str, str, str]] = set()
        given = 0
        with self._write() as conn:
            for chunk in batched(links, 20_000):
                # one row per record (the last wins): a statement may not upsert one twice
                params = {
                    (c, e, x): {"connection": c, "entity": e, "external_id": x,
                                "customer_id": cid, "method": method, "score": float(score),
                                "updated_at": now}
                    for c, e, x, cid, method, score in chunk
                }
                if replace:
                    kept.update(params)
                given += len(chunk)
                conn.execute(statement, list(params.values()))
            if replace:
                keys = sa.select(tbl.c.connection, tbl.c.entity, tbl.c.external_id)
                stale = [tuple(k) for k in conn.execute(keys) if tuple(k) not in kept]
                for part in chunked(stale, 500):
                    conn.execute(sa.delete(tbl).where(
                        sa.tuple_(tbl.c.connection, tbl.c.entity, tbl.c.external_id).in_(part)
                    ))
        return given

    def customer_links(self) -> dict[RecordKey, str]:
        """(connection, entity, external_id) -> end customer id."""
        tbl = table(CustomerLink)
        query = sa.select(tbl.c.connection, tbl.c.entity, tbl.c.external_id, tbl.c.customer_id)
        with self._read() as conn:
            return {RecordKey(c, e, x): cid for c, e, x, cid in conn.execute(query)}

    def account_links(self) -> dict[tuple[str, str], tuple[str, str, float]]:
        """(connection, account id) -> (customer id, method, score): every account's
        link as plain tuples (a million of them fit in a few hundred MB)."""
        tbl = table(CustomerLink)
        query = sa.select(tbl.c.connection, tbl.c.external_id, tbl.c.customer_id,
                          tbl.c.method, tbl.c.score).where(tbl.c.entity == "account")
        common: dict[str, str] = {}  # connection names and methods: one string each
        one = common.setdefault
        with self._read() as conn:
            return {(one(c, c), x): (cid, one(m, m), s) for c, x, cid, m, s in
                    conn.execute(query.execution_options(yield_per=20_000))}

    def customer_link_rows(self) -> list[CustomerLinkRow]:
        tbl = table(CustomerLink)
        query = sa.select(tbl.c.connection, tbl.c.entity, tbl.c.external_id,
                          tbl.c.customer_id, tbl.c.method, tbl.c.score)
        with self._read() as conn:
            return [CustomerLinkRow(RecordKey(c, e, x), cid, m, s)
                    for c, e, x, cid, m, s in conn.execute(query)]

    # -- human verdicts and the review queue --------------------------------------------
    def record_match_decision(
        self, a: Sequence[str], b: Sequence[str], verdict: str, by: str,
        *, now: datetime | None = None,
    ) -> None:
        """Store a person's verdict on a pair (latest wins) and close its review item."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        first, second = ordered_pair(a, b)
        pair = _pair_values(first, second)
        decided_at = now or utcnow()
        tbl, review = table(MatchDecision), table(ReviewItem)
        statement = self._insert(tbl).values(
            **pair, verdict=verdict, decided_by=by, decided_at=decided_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[tbl.c[n] for n in _PAIR_COLUMNS],
            set_={"verdict": verdict, "decided_by": by, "decided_at": decided_at},
        )
        with self._write() as conn:
            conn.execute(statement)
            conn.execute(
                sa.update(review)
                .where(*[review.c[n] == v for n, v in pair.items()])
                .values(status="resolved", updated_at=decided_at)
            )

    def match_decisions(self) -> list[MatchDecisionRow]:
        tbl = table(MatchDecision)
        query = sa.select(*[tbl.c[n] for n in _PAIR_COLUMNS],
                          tbl.c.verdict, tbl.c.decided_by, tbl.c.decided_at).order_by(tbl.c.id)
        with self._read() as conn:
            return [MatchDecisionRow(RecordKey(*r[0:3]), RecordKey(*r[3:6]), r[6], r[7], r[8])
                    for r in conn.execute(query)]

    def replace_review_items(self, items: Sequence[ReviewItemIn],
                             involving: Sequence[RecordKey] | None = None) -> None:
        """Make the open review queue equal ``items``; resolved items stay resolved.

        With ``involving``, only the open items that name one of those records are replaced
        (``items`` are then the pairs among them): an incremental cycle re-matches a few
        accounts and must not rewrite a queue of tens of thousands."""
        tbl = table(ReviewItem)
        now = utcnow()
        params: dict[tuple[RecordKey, RecordKey], dict[str, Any]] = {}
        for item in items:
            first, second = ordered_pair(item.a, item.b)
            params[(first, second)] = {**_pair_values(first, second), "score": float(item.score),
                                       "evidence": item.evidence, "status": "open",
                                       "created_at": now, "updated_at": now}
        statement = self._upsert(tbl, _PAIR_COLUMNS, ("score", "evidence", "updated_at"),
                                 ("score", "evidence"))
        columns = ("id", *_PAIR_COLUMNS)
        with self._write() as conn:
            if involving is None:
                rows = list(conn.execute(_OPEN_REVIEW))
            else:
                keys = list({tuple(k) for k in involving})
                rows = [row for side in (_PAIR_COLUMNS[:3], _PAIR_COLUMNS[3:])
                        for row in self._select_keys(conn, tbl, columns, side, keys,
                                                     where=_IS_OPEN)]
            stale = {row[0] for row in rows
                     if (RecordKey(*row[1:4]), RecordKey(*row[4:7])) not in params}
            for chunk in chunked(sorted(stale)):
                conn.execute(sa.delete(tbl).where(tbl.c.id.in_(chunk)))
            if params:
                conn.execute(statement, list(params.values()))

    def review_items(self, status: str | None = "open") -> list[ReviewItemRow]:
        """Review items with ``status`` (None: all), highest score first."""
        tbl = table(ReviewItem)
        query = sa.select(tbl.c.id, *[tbl.c[n] for n in _PAIR_COLUMNS], tbl.c.score,
                          tbl.c.evidence, tbl.c.status, tbl.c.created_at, tbl.c.updated_at)
        if status is not None:
            query = query.where(tbl.c.status == status)
        with self._read() as conn:
            rows = conn.execute(query.order_by(tbl.c.score.desc(), tbl.c.id))
            return [ReviewItemRow(r[0], RecordKey(*r[1:4]), RecordKey(*r[4:7]), r[7],
                                  r[8] or {}, r[9], r[10], r[11]) for r in rows]

    # -- findings -----------------------------------------------------------------------
    def upsert_findings(
        self, findings: Sequence[FindingLike], *, now: datetime, complete: bool = True
    ) -> FindingDelta:
        """Record the findings seen at ``now``.

        With ``complete`` (the default) ``findings`` is the whole current set: open findings
        missing from it are resolved. Pass ``complete=False`` for a partial re-evaluation.
        """
        tbl = table(Finding)
        params = {
            f.key: {"key": f.key, "kind": f.kind, "rule": f.rule, "customer_id": f.customer_id,
                    "connection": f.connection, "entity": f.entity,
                    "external_id": f.external_id, "evidence": f.evidence,
                    "first_seen": now, "last_seen": now, "resolved_at": None}
            for f in findings
        }
        if not params and not complete:
            return FindingDelta(opened=(), resolved=())  # a part with nothing in it
        # every row offered is open: its resolved_at (None) reopens a resolved one
        statement = self._upsert(tbl, ("key",), ("kind", "rule", "customer_id", "connection",
                                                 "entity", "external_id", "evidence",
                                                 "last_seen", "resolved_at"))
        state = sa.select(tbl.c.key, tbl.c.resolved_at.is_(None))
        content = ("kind", "rule", "customer_id", "evidence")
        unchanged: list[str] = []
        with self._write() as conn:
            is_open: dict[str, bool] = {}
            if complete:
                is_open.update((k, bool(v)) for k, v in conn.execute(state))
            else:  # a part of the findings (a batch, a few customers): only their rows, and
                # those open and unchanged get their last-seen time alone (most, most days)
                query = sa.select(tbl.c.key, tbl.c.resolved_at.is_(None),
                                  *[tbl.c[n] for n in content])
                for chunk in chunked(list(params)):
                    for key, still, *stored in conn.execute(query.where(tbl.c.key.in_(chunk))):
                        is_open[key] = bool(still)
                        if still and stored == [params[key][n] for n in content]:
                            unchanged.append(key)
            opened = tuple(k for k in params if not is_open.get(k, False))
            resolved: tuple[str, ...] = ()
            if complete:
                resolved = tuple(k for k, still in is_open.items() if still and k not in params)
                for chunk in chunked(resolved):
                    conn.execute(sa.update(tbl).where(tbl.c.key.in_(chunk))
                                 .values(resolved_at=now))
            for chunk in chunked(unchanged):
                conn.execute(sa.update(tbl).where(tbl.c.key.in_(chunk)).values(last_seen=now))
            same = set(unchanged)
            changed = [row for key, row in params.items() if key not in same]
            if changed:
                conn.execute(statement, changed)
        return FindingDelta(opened=opened, resolved=resolved)

    def resolve_findings(self, keys: Sequence[str], *, now: datetime) -> int:
        tbl = table(Finding)
        count = 0
        with self._write() as conn:
            for chunk in chunked(list(keys)):
                count += conn.execute(
                    sa.update(tbl).where(tbl.c.key.in_(chunk), tbl.c.resolved_at.is_(None))
                    .values(resolved_at=now)
                ).rowcount
        return count

    def open_finding_keys_all(self) -> set[str]:
        tbl = table(Finding)
        with self._read() as conn:
            return set(conn.execute(sa.select(tbl.c.key).where(tbl.c.resolved_at.is_(None)))
                       .scalars())

    def open_findings(self) -> list[FindingRow]:
        return self.findings(include_resolved=False)

    def findings(self, *, include_resolved: bool = True,
                 kinds: Iterable[str] | None = None) -> list[FindingRow]:
        tbl = table(Finding)
        query = sa.select(*[tbl.c[f.name] for f in fields(FindingRow)]).order_by(tbl.c.id)
        if not include_resolved:
            query = query.where(tbl.c.resolved_at.is_(None))
        if kinds is not None:
            query = query.where(tbl.c.kind.in_(sorted(kinds)))
        with self._read() as conn:
            return [FindingRow(*with_default(r, 8, {})) for r in conn.execute(query)]
