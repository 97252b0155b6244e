"""Compiled mappings: conversions both ways, per-record errors, and mapping-file mistakes."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from config.mapping import CompiledMapping, MappingValueError
from config.mapping_compiler import compile_mapping
from config.yamlsource import parse_yaml

MAPPING = """
vendor: hubspot
entities:
  account:
    object: companies
    fields:
      name: name
      duns: duns_number
      country: {field: country, values: {Germany: DE, 276: DE, "*": null}}
      created_at: {field: createdate, type: datetime, format: epoch_ms}
      modified_at: lastmod
    writes:
      channel_owner: owner_field
      conflict_flag: {field: channel_conflict, type: string, values: {true: "Yes", false: "No"}}
      customer_id: {field: customer_id, policy: human_wins}
  opportunity:
    object: deals
    fields:
      name: dealname
      amount: {field: amount, type: decimal}
      stage_raw: dealstage
      stage_category: {field: dealstage, values: {closedwon: won, closedlost: lost}}
      close_date: {field: closedate, type: date}
      registered_at: {field: reg_at, type: datetime, format: "%d.%m.%Y %H:%M"}
      registration_status: {field: reg_status, default: pending}
    writes:
      registration_expires_at: {field: reg_expiry, format: epoch_ms}
      registration_status: {field: reg_status, values: {active: Active, "*": Other}}
      routed_to: owner_id
      conflict_flag: flag
"""


def compile_text(text: str, vendor: str = "hubspot") -> tuple[CompiledMapping | None, list[str]]:
    doc = parse_yaml(textwrap.dedent(text).lstrip("\n"), "m.yaml")
    compiled = compile_mapping(doc, doc.data, (), vendor, source="m.yaml")
    return compiled, [str(p) for p in doc.problems]


@pytest.fixture(scope="module")
def mapping() -> CompiledMapping:
    compiled, problems = compile_text(MAPPING)
    assert problems == []
    assert compiled is not None
    return compiled


def test_reads_convert_types_and_value_maps(mapping: CompiledMapping) -> None:
    row = mapping.to_canonical(
        "account",
        {
            "name": "Acme GmbH",
            "duns_number": 150483782,
            "country": 276,
            "createdate": "1714521600000",
            "lastmod": "2024-05-01T10:00:00.000+0000",
        },
    )
    assert row == {
        "name": "Acme GmbH",
        "duns": "150483782",
        "country": "DE",
        "created_at": datetime(2024, 5, 1, tzinfo=UTC),
        "modified_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
    }
    assert mapping.to_canonical("account", {"country": "Atlantis"})["country"] is None  # "*"
    assert mapping.to_canonical("account", {"country": "Germany", "name": ""})["name"] is None


def test_opportunity_reads(mapping: CompiledMapping) -> None:
    row = mapping.to_canonical(
        "opportunity",
        {
            "dealname": "Big deal",
            "amount": 1234.5,
            "dealstage": "closedwon",
            "closedate": "2024-06-30T00:00:00Z",
            "reg_at": "01.02.2024 09:30",
        },
    )
    assert row["amount"] == Decimal("1234.5")
    assert row["stage_raw"] == "closedwon" and row["stage_category"] == "won"
    assert row["close_date"] == date(2024, 6, 30)
    assert row["registered_at"] == datetime(2024, 2, 1, 9, 30, tzinfo=UTC)
    assert row["registration_status"] == "pending"  # default when the field is empty
    assert mapping.read_fields("opportunity") == (
        "dealname",
        "amount",
        "dealstage",
        "closedate",
        "reg_at",
        "reg_status",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"amount": "12,5 EUR"},
            "opportunity field 'amount' (-> amount): expected a number, got '12,5 EUR'",
        ),
        (
            {"dealstage": "appointmentscheduled"},
            "opportunity field 'dealstage' (-> stage_category): 'appointmentscheduled' is not one "
            "of lost, open, won (add it to values)",
        ),
        (
            {"closedate": "next week"},
            "opportunity field 'closedate' (-> close_date): cannot read 'next week' as a "
            "date/time (iso)",
        ),
        (
            {"reg_at": "2024-02-01"},
            "opportunity field 'reg_at' (-> registered_at): cannot read '2024-02-01' as a "
            "date/time (%d.%m.%Y %H:%M)",
        ),
        (
            {"dealname": {"nested": 1}},
            "opportunity field 'dealname' (-> name): expected text, got dict",
        ),
    ],
)
def test_bad_data_names_the_field_and_reason(
    mapping: CompiledMapping, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(MappingValueError) as caught:
        mapping.to_canonical("opportunity", fields)
    assert str(caught.value) == message


def test_writes_convert_to_vendor_values(mapping: CompiledMapping) -> None:
    assert mapping.to_vendor("opportunity", "registration_expires_at", date(2024, 5, 1)) == (
        1714521600000
    )
    assert mapping.to_vendor("opportunity", "registration_status", "active") == "Active"
    assert mapping.to_vendor("opportunity", "registration_status", "expired") == "Other"
    assert mapping.to_vendor("opportunity", "conflict_flag", True) is True
    assert mapping.to_vendor("account", "conflict_flag", True) == "Yes"
    assert mapping.to_vendor("account", "conflict_flag", False) == "No"
    assert mapping.to_vendor("account", "channel_owner", None) is None
    assert mapping.to_vendor_fields("opportunity", {"routed_to": "42", "conflict_flag": False}) == {
        "owner_id": "42",
        "flag": False,
    }
    with pytest.raises(KeyError):
        mapping.to_vendor("account", "scorecard_verdict", "paper")
    with pytest.raises(MappingValueError) as caught:
        mapping.to_vendor("opportunity", "conflict_flag", "perhaps")
    assert str(caught.value) == (
        "opportunity field 'flag' (-> conflict_flag): expected true or false, got 'perhaps'"
    )


def test_write_policies_default_to_human_wins_for_owner_fields(mapping: CompiledMapping) -> None:
    policies = {out: spec.policy for out, spec in mapping.writes("account").items()}
    assert policies == {
        "channel_owner": "human_wins",
        "conflict_flag": "middleware",
        "customer_id": "human_wins",
    }
    spec = mapping.write_spec("opportunity", "routed_to")
    assert spec is not None and spec.policy == "human_wins" and spec.field == "owner_id"
    assert mapping.write_spec("opportunity", "channel_owner") is None
    assert mapping.object_name("opportunity") == "deals"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "entities:\n  acount:\n    object: companies\n    fields: {name: name}\n",
            ["m.yaml:2 entities.acount: unknown entity 'acount'; did you mean 'account'?"],
        ),
        (
            "entities:\n  account:\n    fields: {name: name}\n",
            ["m.yaml:2 entities.account.object: required: the vendor object name (text)"],
        ),
        (
            "entities:\n  account:\n    object: x\n    fields:\n      name: {feild: name}\n",
            [
                "m.yaml:5 entities.account.fields.name.feild: unknown key 'feild'; "
                "did you mean 'field'?",
                "m.yaml:5 entities.account.fields.name.field: required: the vendor field name",
            ],
        ),
        (
            "entities:\n  account:\n    object: x\n    fields:\n"
            "      created_at: {field: c, type: date}\n",
            [
                "m.yaml:5 entities.account.fields.created_at.type: account.created_at is a "
                "datetime, not a date"
            ],
        ),
        (
            "entities:\n  account:\n    object: x\n    fields:\n"
            "      name: {field: n, format: iso}\n",
            [
                "m.yaml:5 entities.account.fields.name.format: format applies to date and "
                "datetime fields only (this one is string)"
            ],
        ),
        (
            "entities:\n  opportunity:\n    object: x\n    fields:\n"
            "      amount: {field: a, type: decimal, default: lots}\n",
            [
                "m.yaml:5 entities.opportunity.fields.amount.default: default does not fit a "
                "decimal: expected a number, got 'lots'"
            ],
        ),
        (
            "entities:\n  opportunity:\n    object: x\n    fields: {name: n}\n    writes:\n"
            "      routed_to: {field: o, policy: humans_win}\n",
            [
                "m.yaml:6 entities.opportunity.writes.routed_to.policy: unknown policy "
                "'humans_win'; use middleware or human_wins"
            ],
        ),
        (
            "entities:\n  opportunity:\n    object: x\n    fields: {name: n}\n    writes:\n"
            "      registration_status:\n        field: s\n        values: {actve: Active}\n",
            [
                "m.yaml:8 entities.opportunity.writes.registration_status.values.actve: 'actve' "
                "is not one of active, expired, expiring, extended, lost, pending, released, won; "
                "did you mean 'active'?"
            ],
        ),
        (
            "vendor: hubspot\nentitys: {}\n",
            [
                "m.yaml:1 entities: needs at least one of: account, opportunity",
                "m.yaml:2 entitys: unknown key 'entitys'; did you mean 'entities'?",
            ],
        ),
    ],
)
def test_mapping_mistakes_name_file_line_and_key(text: str, expected: list[str]) -> None:
    compiled, problems = compile_text(text)
    assert compiled is None
    assert sorted(problems) == sorted(expected)
