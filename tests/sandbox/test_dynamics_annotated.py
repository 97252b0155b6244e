"""Annotated Dataverse pages joined from the rows' wire form equal the per-row rendering,
before and after writes, a rename of a referenced row, a schema change and a raw edit."""

from __future__ import annotations

import pytest

from sandbox.dynamics import DynamicsApp
from sandbox.dynamics.reads import FORMATTED, LOOKUP_NAME, NAV_NAME
from sandbox.fragments import encode
from tests.sandbox.test_dynamics import Started, certificate, env, start, tls  # noqa: F401  # fixtures

SPECS = ("*", FORMATTED, LOOKUP_NAME, f"{FORMATTED},{NAV_NAME}", "Microsoft.Dynamics.CRM.*")
DEAL_COLUMNS = ["name", "_parentaccountid_value", "_customerid_value", "_ownerid_value",
                "salesstage", "statecode", "new_registrationstatus", "estimatedvalue",
                "opportunityid"]
ACCOUNT_COLUMNS = ["name", "_parentaccountid_value", "new_channelconflict", "statecode",
                   "accountid"]


def _fast_and_slow(app: DynamicsApp, logical: str, select: list[str], annotations: str
                   ) -> tuple[list[bytes], list[bytes]]:
    """Each row's annotated JSON the fast way (wire form) and rendered row by row."""
    with app.lock:
        table = app.store.tables[logical]
        ids = sorted(table.rows)
        table.wires.sync(table.definition, app.store.pokes)
        fast = app._annotated_fragments(table, ids, ("test", len(ids)), select, annotations)
        render = app.row_renderer(table, select, annotations)
        slow = [encode(render(table.rows[record_id])) for record_id in ids]
    return fast, slow


def _agree(app: DynamicsApp, deal_columns: list[str] = DEAL_COLUMNS,
           account_columns: list[str] = ACCOUNT_COLUMNS) -> bytes:
    """Fast and slow agree for every annotation spec; the ``*`` deal page, joined."""
    for spec in SPECS:
        for logical, select in (("opportunity", deal_columns),
                                ("account", account_columns)):
            fast, slow = _fast_and_slow(app, logical, select, spec)
            assert fast == slow, (logical, spec)
    return b"".join(_fast_and_slow(app, "opportunity", deal_columns, "*")[0])


@pytest.fixture
def deals() -> tuple[DynamicsApp, list[str], list[str]]:
    app = DynamicsApp()
    accounts = [app.create_record("account", {"name": f"Acme {i}", "statecode": i % 2,
                                              "new_channelconflict": i == 1})
                for i in range(3)]
    app.update_record("account", accounts[2], {"_parentaccountid_value": accounts[0]})
    app.update_record("account", accounts[0], {"_parentaccountid_value": accounts[0]})
    deal_ids = [app.create_record("opportunity", {
        "name": f"Deal {i}", "_parentaccountid_value": accounts[i % 3] if i != 4 else None,
        "_customerid_value": accounts[(i + 1) % 3], "salesstage": i % 4,
        "statecode": 0, "new_registrationstatus": 100000001, "estimatedvalue": 10.5 * i})
        for i in range(6)]
    return app, accounts, deal_ids


def test_annotated_pages_equal_the_per_row_rendering(deals: tuple[DynamicsApp, list[str],
                                                                   list[str]]) -> None:
    app, _, _ = deals
    page = _agree(app)
    assert page.count(f"@{FORMATTED}".encode()) > 0
    assert b'"Acme 0"' in page and b'"account"' in page


def test_pages_follow_updates_renames_deletes_and_rollbacks(
        deals: tuple[DynamicsApp, list[str], list[str]]) -> None:
    app, accounts, deal_ids = deals
    _agree(app)  # the kept lookup annotations exist from here on
    app.update_record("opportunity", deal_ids[0], {"_parentaccountid_value": accounts[1],
                                                   "salesstage": 3})
    app.update_record("opportunity", deal_ids[4], {"_parentaccountid_value": accounts[2]})
    _agree(app)
    app.update_record("account", accounts[0], {"name": "Renamed Acme"})
    page = _agree(app)
    assert b'"Renamed Acme"' in page and b'"Acme 0"' not in page
    app.delete_record("account", accounts[1])  # lookups to it lose their label
    page = _agree(app)
    assert b'"Acme 1"' not in page
    late = app.create_record("account", {"name": "Late Acme"}, record_id=accounts[1])
    assert late == accounts[1]
    assert b'"Late Acme"' in _agree(app)
    with app.lock:  # a change set that fails: its rename is undone
        app.store.begin()
        app.store.update("account", accounts[2], {"name": "Never Acme"})
        assert b'"Never Acme"' in _agree(app)
        app.store.rollback()
    page = _agree(app)
    assert b'"Never Acme"' not in page and b'"Acme 2"' in page


def test_pages_follow_a_schema_change_and_a_raw_edit(
        deals: tuple[DynamicsApp, list[str], list[str]]) -> None:
    app, accounts, deal_ids = deals
    _agree(app)
    app.drop_attribute("opportunity", "new_registrationstatus")
    columns = [c for c in DEAL_COLUMNS if c != "new_registrationstatus"]
    _agree(app, columns)
    app.corrupt_record("account", accounts[0], "name", "Raw Acme")  # no version bump
    page = _agree(app, columns)
    assert b'"Raw Acme"' in page
    app.corrupt_record("opportunity", deal_ids[1], "salesstage", 99)  # no such option
    app.corrupt_record("opportunity", deal_ids[2], "_parentaccountid_value", "not-a-row")
    page = _agree(app, columns)
    assert b'"not-a-row"' in page
    app.drop_attribute("account", "name")  # the lookups' labels are gone
    page = _agree(app, columns, [c for c in ACCOUNT_COLUMNS if c != "name"])
    assert b'"Raw Acme"' not in page


def test_an_annotated_page_over_http_matches_the_rendering(env: Started) -> None:  # noqa: F811  # fixture
    app, session, api = env
    account = app.create_record("account", {"name": "Http Acme"})
    app.create_record("opportunity", {"name": "Http deal", "_parentaccountid_value": account,
                                      "salesstage": 1})
    headers = {"Prefer": 'odata.include-annotations="*"'}
    url = f"{api}opportunities?$select=name,_parentaccountid_value,salesstage"
    first = session.get(url, headers=headers).json()["value"]
    app.update_record("account", account, {"name": "Http Acme Renamed"})
    second = session.get(url, headers=headers).json()["value"]
    _, slow = _fast_and_slow(app, "opportunity",
                             ["name", "_parentaccountid_value", "salesstage", "opportunityid"],
                             "*")
    assert first[0][f"_parentaccountid_value@{FORMATTED}"] == "Http Acme"
    assert second[0][f"_parentaccountid_value@{FORMATTED}"] == "Http Acme Renamed"
    assert [encode(row) for row in second] == slow


def test_lookups_annotated_at_write_time_follow_later_writes(
        deals: tuple[DynamicsApp, list[str], list[str]]) -> None:
    """The connector's annotations are kept from the first write on, before any read."""
    app, accounts, deal_ids = deals
    app.update_record("account", accounts[1], {"name": "Written Acme"})
    app.update_record("opportunity", deal_ids[3], {"_customerid_value": accounts[0]})
    app.delete_record("account", accounts[2])
    with app.lock:  # a failed change set before any read: nothing of it may stay
        app.store.begin()
        app.store.update("account", accounts[0], {"name": "Never Acme"})
        app.store.rollback()
    fast, slow = _fast_and_slow(app, "opportunity", DEAL_COLUMNS, FORMATTED)
    assert fast == slow
    page = b"".join(fast)
    assert b'"Written Acme"' in page and b'"Acme 2"' not in page and b"Never" not in page
    _agree(app)
