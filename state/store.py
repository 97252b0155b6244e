"""The Store: the one way the sync layer reads and writes persistent state."""

from __future__ import annotations

import sqlalchemy as sa

from state.customers import CustomersMixin
from state.engine import create_store_engine, current_revision, head_revision, upgrade
from state.facts import FactsMixin
from state.match_keys import MatchKeysMixin
from state.outbox import OutboxMixin
from state.records import RecordsMixin
from state.runs import RunsMixin


class Store(RecordsMixin, CustomersMixin, OutboxMixin, RunsMixin, FactsMixin, MatchKeysMixin):
    """Records, customers, runs, findings, outbox, ledger and matching keys over one
    SQLAlchemy engine.

    Every method is one transaction (or part of the caller's, inside ``atomic()``); values
    in and out are plain frozen dataclasses (``state.rows``), never ORM objects.
    """

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)

    @classmethod
    def from_url(cls, url: str) -> Store:
        """A store on ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
        return cls(create_store_engine(url))

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head)."""
        upgrade(self.engine)

    def schema_revision(self) -> str | None:
        return current_revision(self.engine)

    def is_up_to_date(self) -> bool:
        return self.schema_revision() == head_revision()

    def close(self) -> None:
        self.engine.dispose()
