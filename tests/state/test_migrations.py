"""Alembic: first revision to head with data surviving; head matches the models."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from state import OutboxItemIn, RecordKey, Store
from state.engine import alembic_config, create_store_engine, head_revision, upgrade

FIRST = "0001"


def test_there_is_a_real_upgrade_path() -> None:
    revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    assert len(revisions) >= 2
    assert revisions[-1].revision == FIRST and revisions[-1].down_revision is None


def test_first_revision_data_survives_upgrade_to_head(store_url: str) -> None:
    engine = create_store_engine(store_url)
    upgrade(engine, FIRST)
    when = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO account (connection, external_id, deleted, changed_generation,"
                " updated_at, name, country) VALUES ('sf', 'a1', false, 1, :t, 'Acme', 'DE')"
            ),
            {"t": when},
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (connection, entity, external_id, field, value, state,"
                " attempts, created_at, updated_at)"
                " VALUES ('sf', 'account', 'a1', 'Flag__c', :v, 'pending', 0, :t, :t)"
            ),
            {"v": "true", "t": when},
        )
        conn.execute(
            sa.text(
                "INSERT INTO cursor (connection, entity, value, updated_at)"
                " VALUES ('sf', 'account', :v, :t)"
            ),
            {"v": '{"since": "2026-01-05T08:00:00Z"}', "t": when},
        )
    engine.dispose()

    store = Store.from_url(store_url)
    try:
        store.migrate()
        assert store.schema_revision() == head_revision() and store.is_up_to_date()
        (acme,) = store.load_accounts()
        assert acme.key == RecordKey("sf", "account", "a1")
        assert (acme.name, acme.country) == ("Acme", "DE")
        assert [(i.field, i.value) for i in store.due_outbox("sf", now=when, limit=10)] == [
            ("Flag__c", True)
        ]
        assert store.get_cursor("sf", "account") == {"since": "2026-01-05T08:00:00Z"}
        # The open-item index from revision 1 still governs enqueue after the upgrade.
        assert store.enqueue([OutboxItemIn("sf", "account", "a1", "Flag__c", True)]) == 0
    finally:
        store.close()


def test_head_schema_matches_the_models_and_migrate_is_idempotent(store_url: str) -> None:
    store = Store.from_url(store_url)
    try:
        store.migrate()
        store.migrate()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        store.close()
