"""Facts built by position (the scale path's constructor) are the facts built the usual way."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from rules.model import AccountFact, OpportunityFact, RecordKey, positional_builder


def test_a_positionally_built_fact_equals_and_hashes_like_one_built_by_keyword() -> None:
    key = RecordKey("crm", "opportunity", "o-1")
    usual = OpportunityFact(
        key=key, customer_id="cust-1", role="distributor", distributor_id="D1",
        account_key=RecordKey("crm", "account", "a-1"), party="D1", name="Deal",
        amount=Decimal("12.5000"), currency="EUR", stage_category="won",
        close_date=date(2024, 3, 1), created_at=datetime(2024, 1, 1, tzinfo=UTC),
        registered_by="D1", registration_expires_at=date(2024, 6, 1),
        registration_expiry_is_ours=False, registration_status="active")
    values = [getattr(usual, f.name) for f in dataclasses.fields(OpportunityFact)]
    built = positional_builder(OpportunityFact)(*values)
    assert type(built) is OpportunityFact
    assert built == usual and hash(built) == hash(usual) and repr(built) == repr(usual)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "changed"  # type: ignore[misc]  # frozen, on purpose
    assert dataclasses.replace(built, name="Other").name == "Other"
    assert built != dataclasses.replace(usual, amount=Decimal("13"))


def test_an_account_built_by_position_keeps_every_field_in_place() -> None:
    build = positional_builder(AccountFact)
    names = [f.name for f in dataclasses.fields(AccountFact)]
    values = [f"v-{n}" for n in names]
    built = build(*values)
    assert [getattr(built, n) for n in names] == values
