"""What incremental evaluation keeps between cycles, and record lookups by customer or key.

Three small tables (revision 0003): ``engine_state`` (named JSON documents: the last
evaluated generation, the configuration hash, the decisions seen), ``engine_threshold``
(per customer or unmatched group, the next instant time alone changes its state) and
``engine_opportunity`` (the account an opportunity belonged to when it was last
evaluated: a deal moved to another company must re-evaluate the customer it left).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from state.base import StoreBase, chunked, utcnow
from state.pagewrite import record_keys_where, record_table
from state.rows import AccountRow, OpportunityRow, RecordKey
from state.tables import CustomerLink, Finding, SyncRun, table
from state.types import UtcDateTime, json_type


class RunOverlap(NamedTuple):
    generation: int  # below it every change is visible now (this run's id, or less)
    busy_since: datetime | None  # the earliest other run's start: its pages may commit later

class EngineState(SQLModel, table=True):
    __tablename__ = "engine_state"

    name: str = Field(primary_key=True)
    value: Any = Field(default=None, sa_type=json_type(), nullable=True)
    updated_at: datetime = Field(default=None, sa_type=UtcDateTime, nullable=False)


class EngineThreshold(SQLModel, table=True):
    __tablename__ = "engine_threshold"

    group_key: str = Field(primary_key=True)
    due_at: datetime = Field(default=None, sa_type=UtcDateTime, nullable=False, index=True)


class EngineOpportunity(SQLModel, table=True):
    __tablename__ = "engine_opportunity"

    connection: str = Field(primary_key=True)
    external_id: str = Field(primary_key=True)
    account_ref: str | None = None


_ACCOUNT_COLUMNS = tuple(f.name for f in fields(AccountRow))
_OPPORTUNITY_COLUMNS = tuple(f.name for f in fields(OpportunityRow))
_LIVE_OPPORTUNITY = sa.not_(record_table("opportunity").c.deleted)
_OPEN_FINDING = table(Finding).c.resolved_at.is_(None)


def _customer_records() -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The live accounts linked to a list of customers (``customers``), and the live
    opportunities of those accounts."""
    acc, opp, link = record_table("account"), record_table("opportunity"), table(CustomerLink)
    linked = sa.select(link.c.connection, link.c.external_id).where(
        link.c.entity == "account",
        link.c.customer_id.in_(sa.bindparam("customers", expanding=True))).subquery()
    accounts = sa.select(*[acc.c[n] for n in _ACCOUNT_COLUMNS]).join(
        linked, sa.and_(acc.c.connection == linked.c.connection,
                        acc.c.external_id == linked.c.external_id)).where(sa.not_(acc.c.deleted))
    opportunities = sa.select(*[opp.c[n] for n in _OPPORTUNITY_COLUMNS]).join(
        linked, sa.and_(opp.c.connection == linked.c.connection,
                        opp.c.account_ref == linked.c.external_id)).where(sa.not_(opp.c.deleted))
    return accounts, opportunities


_CUSTOMER_RECORDS = _customer_records()


class FactsMixin(StoreBase):
    # -- engine bookkeeping -------------------------------------------------------------
    def engine_state(self, name: str) -> dict[str, Any] | None:
        tbl = table(EngineState)
        with self._read() as conn:
            value = conn.execute(
                sa.select(tbl.c.value).where(tbl.c.name == name)
            ).scalar_one_or_none()
        return dict(value) if isinstance(value, Mapping) else None

    def save_engine_state(self, name: str, value: Mapping[str, Any]) -> None:
        tbl = table(EngineState)
        statement = self._upsert(tbl, ("name",), ("value", "updated_at"))
        with self._write() as conn:
            conn.execute(statement, {"name": name, "value": dict(value), "updated_at": utcnow()})

    def forget_engine_state(self, name: str) -> None:
        """Drop a state document: the next evaluation starts from scratch (full)."""
        tbl = table(EngineState)
        with self._write() as conn:
            conn.execute(sa.delete(tbl).where(tbl.c.name == name))

    def touched_since(self, when: datetime) -> set[RecordKey]:
        """Records whose stored row changed in any way (also only the raw vendor fields, e.g. a
        person clearing a flag we own) at or after ``when``."""
        with self._read() as conn:
            return record_keys_where(conn, lambda tbl: tbl.c.updated_at >= when)

    def overlap(self, run_id: int, *, window: timedelta = timedelta(hours=6)) -> RunOverlap:
        """What other runs still running (started within ``window``: a ``plan`` or
        ``sync --once`` beside the daemon) mean for this one's reads now."""
        tbl = table(SyncRun)
        with self._read() as conn:
            first, started = conn.execute(
                sa.select(sa.func.min(tbl.c.id), sa.func.min(tbl.c.started_at)).where(
                    tbl.c.status == "running", tbl.c.id != run_id,
                    tbl.c.started_at > utcnow() - window)
            ).one()
        return RunOverlap(run_id if first is None else min(run_id, int(first) - 1), started)

    def due_groups(self, now: datetime) -> set[str]:
        tbl = table(EngineThreshold)
        with self._read() as conn:
            return set(conn.execute(sa.select(tbl.c.group_key).where(tbl.c.due_at <= now))
                       .scalars())

    def save_thresholds(
        self, thresholds: Mapping[str, datetime], *, replacing: Iterable[str] | None = None
    ) -> None:
        """Set next thresholds; ``replacing`` (None: all) are the groups re-evaluated,
        whose old thresholds go first."""
        tbl = table(EngineThreshold)
        rows = [{"group_key": k, "due_at": v} for k, v in thresholds.items()]
        groups = None if replacing is None else sorted(set(replacing) | set(thresholds))
        if groups == []:
            return  # a partial evaluation that touched no group
        with self._write() as conn:
            if groups is None:
                conn.execute(sa.delete(tbl))
            else:
                for chunk in chunked(groups):
                    conn.execute(sa.delete(tbl).where(tbl.c.group_key.in_(chunk)))
            if rows:
                conn.execute(sa.insert(tbl), rows)

    def snapshot_opportunity_refs(self, *, changed_after: int | None = None) -> None:
        """Remember every live opportunity's account as evaluated (after a full evaluation).

        ``changed_after``: a generation up to which the remembered accounts are known to be
        right (every evaluation since the last snapshot kept them); only the opportunities
        changed after it are written again, not millions of rows that did not move."""
        refs, opp = table(EngineOpportunity), record_table("opportunity")
        live = sa.select(opp.c.connection, opp.c.external_id, opp.c.account_ref).where(
            sa.not_(opp.c.deleted))
        columns = ["connection", "external_id", "account_ref"]
        with self._write() as conn:
            if changed_after is None:
                conn.execute(sa.delete(refs))
                conn.execute(sa.insert(refs).from_select(columns, live))
                return
            changed = opp.c.changed_generation > changed_after
            conn.execute(sa.delete(refs).where(sa.tuple_(refs.c.connection, refs.c.external_id)
                                               .in_(sa.select(opp.c.connection,
                                                              opp.c.external_id).where(changed))))
            conn.execute(sa.insert(refs).from_select(columns, live.where(changed)))

    def evaluated_refs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """(connection, opportunity id) -> account ref when last evaluated (known ones)."""
        wanted = list(set(keys))
        if not wanted:
            return {}  # no transaction for nothing: a quiet cycle asks with no keys
        with self._read() as conn:
            return {(c, e): r for c, e, r in self._select_keys(
                conn, table(EngineOpportunity), ("connection", "external_id", "account_ref"),
                ("connection", "external_id"), wanted)}

    def save_evaluated_refs(self, refs: Mapping[tuple[str, str], str | None],
                            gone: Iterable[tuple[str, str]] = ()) -> None:
        tbl = table(EngineOpportunity)
        grouped = _by_connection([*refs, *gone])
        if not grouped:
            return
        with self._write() as conn:
            for connection, ids in grouped.items():
                for chunk in chunked(ids):
                    conn.execute(sa.delete(tbl).where(
                        tbl.c.connection == connection, tbl.c.external_id.in_(chunk)))
            rows = [{"connection": c, "external_id": e, "account_ref": r}
                    for (c, e), r in refs.items()]
            if rows:
                conn.execute(sa.insert(tbl), rows)

    # -- records by key or customer -----------------------------------------------------
    def count_accounts(self, connections: Sequence[str]) -> int:
        """Live accounts of ``connections``."""
        tbl = record_table("account")
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                sa.not_(tbl.c.deleted), tbl.c.connection.in_(list(connections)))).scalar_one())

    def accounts_by_keys(self, keys: Iterable[tuple[str, str]]) -> list[AccountRow]:
        """Accounts (deleted ones too) by (connection, external id)."""
        return self._rows_by_keys("account", _ACCOUNT_COLUMNS, AccountRow, keys)

    def opportunities_by_keys(self, keys: Iterable[tuple[str, str]]) -> list[OpportunityRow]:
        """Opportunities (deleted ones too) by (connection, external id)."""
        return self._rows_by_keys("opportunity", _OPPORTUNITY_COLUMNS, OpportunityRow, keys)

    def _rows_by_keys(
        self, entity: str, columns: Sequence[str], row_type: Any,
        keys: Iterable[tuple[str, str]],
    ) -> list[Any]:
        wanted = sorted(set(keys))
        if not wanted:
            return []
        with self._read() as conn:
            return [row_type(*row) for row in self._select_keys(
                conn, record_table(entity), tuple(columns), ("connection", "external_id"),
                wanted)]

    def records_of_customers(
        self, customer_ids: Iterable[str]
    ) -> tuple[list[AccountRow], list[OpportunityRow]]:
        """Live accounts linked to the customers, and the live opportunities of those
        accounts (ordered by id, as a full load is)."""
        accounts: list[AccountRow] = []
        opportunities: list[OpportunityRow] = []
        ids = sorted(set(customer_ids))
        if not ids:
            return accounts, opportunities
        of_accounts, of_opportunities = _CUSTOMER_RECORDS
        with self._read() as conn:
            for chunk in chunked(ids, 900):
                accounts.extend(AccountRow(*row) for row in conn.execute(
                    of_accounts, {"customers": list(chunk)}))
                opportunities.extend(OpportunityRow(*row) for row in conn.execute(
                    of_opportunities, {"customers": list(chunk)}))
        return accounts, opportunities

    def opportunities_of_accounts(self, keys: Iterable[tuple[str, str]]) -> list[OpportunityRow]:
        """Live opportunities whose account ref is one of ``keys`` (connection, account id)."""
        wanted = sorted(set(keys))
        if not wanted:
            return []
        with self._read() as conn:
            return [OpportunityRow(*row) for row in self._select_keys(
                conn, record_table("opportunity"), _OPPORTUNITY_COLUMNS,
                ("connection", "account_ref"), wanted, where=(_LIVE_OPPORTUNITY,))]

    def unmatched_opportunities(
        self, linked: Container[tuple[str, str]] | None = None
    ) -> list[OpportunityRow]:
        """Live opportunities without an account, or whose (connection, account ref) has no
        customer link: the stored links, or ``linked`` (a dry run's, not saved). Each
        distinct account reference is looked at once (a scan of its index), not each
        deal; the deals of the few unlinked are then read by reference."""
        opp, link = record_table("opportunity"), table(CustomerLink)
        refs = (sa.select(opp.c.connection, opp.c.account_ref).distinct()
                .where(opp.c.account_ref.is_not(None)))
        if linked is None:  # the database compares with the stored links
            sub = refs.subquery()
            refs = sa.select(sub.c.connection, sub.c.account_ref).where(~sa.exists().where(
                link.c.connection == sub.c.connection, link.c.entity == "account",
                link.c.external_id == sub.c.account_ref))
        without = sa.select(*[opp.c[n] for n in _OPPORTUNITY_COLUMNS]).where(
            opp.c.account_ref.is_(None), sa.not_(opp.c.deleted))
        with self._read() as conn:
            outside = [(connection, ref) for connection, ref in
                       conn.execute(refs.execution_options(yield_per=50_000))
                       if linked is None or (connection, ref) not in linked]
            found = [OpportunityRow(*row) for row in conn.execute(without)]
        return found + self.opportunities_of_accounts(outside)

    def links_of(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str, float]]:
        """(connection, account id) -> (customer id, method, score), for the linked ones
        of ``keys``."""
        wanted = list({(c, "account", x) for c, x in keys})
        if not wanted:
            return {}
        with self._read() as conn:
            return {(c, x): (customer, method, score) for c, x, customer, method, score
                    in self._select_keys(conn, table(CustomerLink),
                                         ("connection", "external_id", "customer_id",
                                          "method", "score"),
                                         ("connection", "entity", "external_id"), wanted)}

    def drop_customer_links(self, keys: Iterable[tuple[str, str]]) -> None:
        tbl = table(CustomerLink)
        with self._write() as conn:
            for connection, ids in _by_connection(keys).items():
                for chunk in chunked(ids):
                    conn.execute(sa.delete(tbl).where(
                        tbl.c.connection == connection, tbl.c.entity == "account",
                        tbl.c.external_id.in_(chunk)))

    def open_finding_keys(
        self, customer_ids: Iterable[str], subjects: Iterable[RecordKey]
    ) -> set[str]:
        """Keys of open findings of the customers or about the subject records."""
        tbl = table(Finding)
        keys: set[str] = set()
        customers = list({(c,) for c in customer_ids})
        records = list({tuple(s) for s in subjects})
        if not customers and not records:
            return keys
        with self._read() as conn:
            for key_columns, wanted in ((("customer_id",), customers),
                                        (("connection", "entity", "external_id"), records)):
                keys.update(k for (k,) in self._select_keys(
                    conn, tbl, ("key",), key_columns, wanted, where=(_OPEN_FINDING,)))
        return keys

    def secret_values(self, internal: Sequence[str]) -> tuple[set[str], set[str]]:
        """(distributor ids named in records, users of internal connections): what a
        partner must never see, over the whole store (a partial evaluation needs all)."""
        acc, opp = record_table("account"), record_table("opportunity")
        distributors: set[str] = set()
        users: set[str] = set()
        with self._read() as conn:
            for tbl, column in ((opp, "registered_by"), (acc, "partner_id")):
                distributors.update(conn.execute(
                    sa.select(tbl.c[column]).where(
                        sa.not_(tbl.c.deleted), tbl.c[column].is_not(None)).distinct()
                ).scalars())
            if internal:
                for tbl in (acc, opp):
                    users.update(conn.execute(
                        sa.select(tbl.c.owner_user).where(
                            sa.not_(tbl.c.deleted), tbl.c.owner_user.is_not(None),
                            tbl.c.connection.in_(list(internal))).distinct()
                    ).scalars())
        return {d for d in distributors if d}, {u for u in users if u}


def _by_connection(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, set[str]] = {}
    for connection, ext_id in keys:
        grouped.setdefault(connection, set()).add(ext_id)
    return {c: sorted(ids) for c, ids in grouped.items()}
