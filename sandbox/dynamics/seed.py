"""Turns vendor-neutral seed records and native fixtures into Dataverse rows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sandbox.dynamics.odata import format_datetime, normalize_datetime
from sandbox.dynamics.schema import (
    CHOICE_TYPES,
    COUNTRY_NAMES,
    CURRENCY_NAMES,
    OPPORTUNITY_STATES,
    PUBLISHER_OPTION_BASE,
    REGISTRATION_DECISION_LABELS,
    REGISTRATION_STATUS_LABELS,
)
from sandbox.world import CrmSeed

if TYPE_CHECKING:
    from sandbox.dynamics.app import DynamicsApp

_IDS = uuid.UUID("0b4f2d1e-7c39-4e8a-9a55-3c2f1d6b8e70")
_STATE_OF_STAGE = {"open": 0, "won": 1, "lost": 2}
_STATUS_OF_STATE = {0: 1, 1: 3, 2: 4}


def record_id(connection: str, kind: str, key: str) -> str:
    """Deterministic GUIDs, so a seed always yields the same ids."""
    return str(uuid.uuid5(_IDS, f"{connection}/{kind}/{key}"))


def _stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value)


def _option(labels: list[str], value: str | None, what: str) -> int | None:
    if value is None:
        return None
    for index, label in enumerate(labels):
        if label.lower() == value.lower():
            return PUBLISHER_OPTION_BASE + index
    raise ValueError(f"{what}: unknown option '{value}' (known: {', '.join(labels)})")


def load_seed(app: DynamicsApp, crm: CrmSeed) -> None:
    conn = crm.connection
    users: dict[str, str] = {}
    for user in crm.users:
        users[user.key] = app.create_record("systemuser", {
            "fullname": user.name, "internalemailaddress": user.email,
            "domainname": user.email}, record_id=record_id(conn, "user", user.key))
    default_owner = next(iter(users.values()), app.app_user_id)
    currencies: dict[str, str] = {}

    def currency(code: str) -> str:
        if code not in currencies:
            currencies[code] = app.create_record("transactioncurrency", {
                "currencyname": CURRENCY_NAMES.get(code, code), "isocurrencycode": code,
            }, record_id=record_id(conn, "currency", code))
        return currencies[code]

    accounts: dict[str, str] = {}
    for acc in crm.accounts:
        modified = acc.modified_at or acc.created_at
        accounts[acc.key] = app.create_record("account", {
            "name": acc.name,
            "websiteurl": acc.website,
            "address1_country": COUNTRY_NAMES.get(acc.country, acc.country) if acc.country
            else None,
            "new_duns": acc.duns,
            "new_vatid": acc.vat_id,
            "new_channelowner": acc.channel_owner,
            "new_partnerid": acc.partner_id,
            "new_channelconflict": False,
            "_ownerid_value": users.get(acc.owner_user or "", default_owner),
            "statecode": 0,
            "createdon": _stamp(acc.created_at),
        }, modified_at=modified, record_id=record_id(conn, "account", acc.key))
    for deal in crm.deals:
        account = accounts.get(deal.account_key)
        if account is None:
            raise ValueError(f"deal {deal.key}: unknown account key {deal.account_key!r}")
        state = _STATE_OF_STAGE.get(deal.stage)
        if state is None:
            raise ValueError(f"deal {deal.key}: unknown stage {deal.stage!r}")
        stage_no = 3 if state else int(uuid.uuid5(_IDS, deal.key).int % 3)
        app.create_record("opportunity", {
            "name": deal.name,
            "_parentaccountid_value": account,
            "_customerid_value": account,
            "estimatedvalue": float(deal.amount),
            "_transactioncurrencyid_value": currency(deal.currency),
            "estimatedclosedate": deal.close_date.isoformat(),
            "statecode": state,
            "statuscode": _STATUS_OF_STATE[state],
            "salesstage": stage_no,
            "new_lastactivityon": _stamp(deal.last_activity_at),
            "_ownerid_value": users.get(deal.owner_user or "", default_owner),
            "new_registeredby": deal.registered_by,
            "new_registeredon": _stamp(deal.registered_at),
            "new_registrationstatus": _option(REGISTRATION_STATUS_LABELS,
                                              deal.registration_status, f"deal {deal.key}"),
            "new_registrationexpireson": deal.registration_expires_at.isoformat()
            if deal.registration_expires_at else None,
            "new_registrationdecision": _option(REGISTRATION_DECISION_LABELS,
                                                deal.registration_decision, f"deal {deal.key}"),
            "new_reassignto": deal.reassign_to,
            "new_channelconflict": False,
            "createdon": _stamp(deal.created_at),
        }, modified_at=deal.modified_at, record_id=record_id(conn, "deal", deal.key))


_FIXTURE_ORDER = ("systemusers", "transactioncurrencies", "accounts", "opportunities")


def load_fixture(app: DynamicsApp, data: dict[str, Any]) -> None:
    unknown = set(data) - set(_FIXTURE_ORDER)
    if unknown:
        raise ValueError(f"fixture: unknown entity set(s) {sorted(unknown)}; "
                         f"expected {list(_FIXTURE_ORDER)}")
    for set_name in _FIXTURE_ORDER:
        table = app.store.by_set[set_name]
        props = table.definition.by_prop()
        for index, raw in enumerate(data.get(set_name, [])):
            where = f"fixture {set_name}[{index}]"
            if not isinstance(raw, dict):
                raise ValueError(f"{where}: expected an object")
            values: dict[str, Any] = {}
            for key, value in raw.items():
                attr = props.get(key)
                if attr is None:
                    raise ValueError(f"{where}: unknown column {key!r}")
                if attr.type in CHOICE_TYPES and isinstance(value, str):
                    by_label = {label.lower(): v for v, label in attr.options.items()}
                    if value.lower() not in by_label:
                        raise ValueError(f"{where}: {key}: unknown option {value!r}")
                    value = by_label[value.lower()]
                elif attr.type == "DateTime" and isinstance(value, str):
                    value = (date.fromisoformat(value[:10]).isoformat() if attr.date_only
                             else normalize_datetime(value))
                values[key] = value
            modified = values.pop("modifiedon", None)
            app.create_record(set_name, values, record_id=values.pop(table.definition.pk, None),
                              modified_at=datetime.fromisoformat(modified.replace("Z", "+00:00"))
                              if modified else None)


__all__ = ["OPPORTUNITY_STATES", "load_fixture", "load_seed", "record_id"]
