"""The accounts' stored matching keys (``account_match_key``): read with the accounts,
saved after a full evaluation made them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from state.base import StoreBase, batched
from state.pagewrite import record_table
from state.tables import AccountMatchKey, table

KEY_COLUMNS = ("country", "duns", "vat", "domain", "name", "legal")
MATCH_INPUTS = ("name", "domain", "country", "duns", "vat_id")


class MatchKeysMixin(StoreBase):
    def account_inputs_and_keys(self, connections: Sequence[str],
                                version: int) -> list[tuple[Any, ...]]:
        """Every live account of ``connections`` in store order, read once: (account id,
        change generation, connection, external id, then its MATCH_INPUTS, 1 when its
        stored keys are current (else 0), then the stored keys' KEY_COLUMNS):
        ``rules.features.RecordFeatures.from_stored`` reads these rows."""
        accounts, keys = record_table("account"), table(AccountMatchKey)
        current = sa.and_(keys.c.generation == accounts.c.changed_generation,
                          keys.c.version == version)
        query = (
            sa.select(accounts.c.id, accounts.c.changed_generation, accounts.c.connection,
                      accounts.c.external_id, *[accounts.c[n] for n in MATCH_INPUTS],
                      sa.case((current, 1), else_=0), *[keys.c[n] for n in KEY_COLUMNS])
            .select_from(accounts.outerjoin(keys, keys.c.account_id == accounts.c.id))
            .where(sa.not_(accounts.c.deleted), accounts.c.connection.in_(list(connections)))
            .order_by(accounts.c.id))
        with self._read() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def save_match_keys(self, made: Iterable[tuple[int, int, Sequence[str | None]]],
                        version: int) -> int:
        """Store (account id, change generation, keys in ``KEY_COLUMNS`` order) made by
        normalisation ``version``, replacing what an account had; one transaction, written
        20,000 at a time. Returns how many were given."""
        tbl = table(AccountMatchKey)
        statement = self._upsert(tbl, ("account_id",), ("generation", "version", *KEY_COLUMNS))
        given = 0
        with self._write() as conn:
            for chunk in batched(made, 20_000):
                conn.execute(statement, [
                    {"account_id": account_id, "generation": generation, "version": version,
                     **dict(zip(KEY_COLUMNS, keys, strict=True))}
                    for account_id, generation, keys in chunk])
                given += len(chunk)
        return given
