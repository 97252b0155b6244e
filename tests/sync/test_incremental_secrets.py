"""An incremental evaluation reads the partner secrets once, then grows them with the
records it loads: a distributor id or an internal user that appears in a changed record
is hidden from partners from that cycle on, without rescanning the store."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, cast

from state.rows import AccountRow, OpportunityRow
from sync.cycle import Runtime
from sync.incremental import Engine, _secrets


class Store:
    def __init__(self) -> None:
        self.scans = 0

    def secret_values(self, internal: list[str]) -> tuple[set[str], set[str]]:
        self.scans += 1
        assert internal == ["sf-direct"]
        return {"dist-acme"}, {"rep.anna@example.com"}


def runtime(name: str, role: str, distributor: str | None = None) -> Runtime:
    return Runtime(name=name, vendor="salesforce", role=role, distributor_id=distributor,
                   channel_manager=None, connector=cast(Any, None), mapping=cast(Any, None))


def record(kind: Any, connection: str, **values: Any) -> Any:
    found: dict[str, Any] = {f.name: None for f in fields(kind)}
    found.update(connection=connection, external_id="x", deleted=False, **values)
    return kind(**found)


def test_secrets_are_read_once_then_grown_from_the_loaded_records() -> None:
    store, engine = Store(), Engine()
    runtimes = [runtime("sf-direct", "internal"), runtime("pd-bolt", "distributor", "dist-bolt")]
    first = _secrets(store, runtimes, engine, [], [])
    assert first.distributor_ids == {"dist-acme", "dist-bolt"}
    assert first.internal_users == {"rep.anna@example.com"}

    accounts = [record(AccountRow, "sf-direct", owner_user="rep.bert@example.com",
                       partner_id="dist-cobalt"),
                record(AccountRow, "pd-bolt", owner_user="bolt.user@example.com")]
    opportunities = [record(OpportunityRow, "sf-direct", registered_by="dist-delta")]
    grown = _secrets(store, runtimes, engine, accounts, opportunities)
    assert store.scans == 1  # the store was not read again
    assert grown.distributor_ids == {"dist-acme", "dist-bolt", "dist-cobalt", "dist-delta"}
    # a partner's own CRM users are not the manufacturer's secrets
    assert grown.internal_users == {"rep.anna@example.com", "rep.bert@example.com"}
    # a value seen once stays hidden when the record that named it is gone
    assert _secrets(store, runtimes, engine, [], []) == grown

    engine.secrets = None  # another process evaluated: read afresh
    _secrets(store, runtimes, engine, [], [])
    assert store.scans == 2
