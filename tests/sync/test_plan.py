"""Planning writes: only differences, no echo writes, human edits respected, partners isolated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync.plan import Target, plan_writes, same_value
from sync.visibility import ANOTHER_PARTY, Audience, Secrets


@dataclass(frozen=True)
class Spec:
    field: str
    policy: str = "middleware"
    truthy: str | None = None

    def to_vendor(self, value: Any) -> Any:
        if self.truthy is not None and isinstance(value, bool):
            return self.truthy if value else "false"
        return value


INTERNAL = Target(
    audience=Audience("internal"),
    writes={
        "account": {
            "conflict_flag": Spec("Channel_Conflict__c"),
            "channel_owner": Spec("Channel_Owner__c", policy="human_wins"),
            "conflict_reason": Spec("Conflict_Reason__c"),
        }
    },
)
PARTNER = Target(
    audience=Audience("distributor", "dist-a"),
    writes={
        "account": {
            "conflict_flag": Spec("channel_conflict", truthy="true"),
            "channel_owner": Spec("channel_owner"),
            "conflict_reason": Spec("channel_conflict_reason"),
            "customer_id": Spec("cs_customer"),
        }
    },
)
SECRETS = Secrets.of(["dist-a", "dist-b"], ["005000000000001"])


def plan(desired: dict, current: dict, ledger: dict | None = None) -> tuple[list, list]:
    return plan_writes(
        desired=desired,
        rules={},
        targets={"sf": INTERNAL, "hs-a": PARTNER},
        current=current,
        ledger=ledger or {},
        secrets=SECRETS,
    )


def test_writes_only_what_differs_from_the_crm() -> None:
    key = ("sf", "account", "001A")
    writes, _ = plan(
        {key: {"conflict_flag": True, "conflict_reason": "x"}},
        {key: {"Channel_Conflict__c": True, "Conflict_Reason__c": "old"}},
    )
    assert [(w.field, w.value, w.previous) for w in writes] == [("Conflict_Reason__c", "x", "old")]


def test_nothing_to_write_when_the_crm_already_shows_it() -> None:
    key = ("hs-a", "account", "9")
    writes, held = plan({key: {"conflict_flag": True}}, {key: {"channel_conflict": "true"}})
    assert writes == [] and held == []


def test_human_wins_field_changed_by_a_person_is_held_back() -> None:
    key = ("sf", "account", "001A")
    ledger = {"sf": {("account", "001A", "Channel_Owner__c"): "dist-a"}}
    writes, held = plan(
        {key: {"channel_owner": "dist-a"}}, {key: {"Channel_Owner__c": "direct"}}, ledger
    )
    assert writes == []
    assert held[0].field == "Channel_Owner__c" and "changed by a person" in held[0].why


def test_human_wins_field_we_own_is_written() -> None:
    key = ("sf", "account", "001A")
    ledger = {"sf": {("account", "001A", "Channel_Owner__c"): "dist-a"}}
    writes, _ = plan(
        {key: {"channel_owner": "dist-b"}}, {key: {"Channel_Owner__c": "dist-a"}}, ledger
    )
    assert [(w.field, w.value) for w in writes] == [("Channel_Owner__c", "dist-b")]


def test_partner_never_sees_another_distributor_or_internal_outputs() -> None:
    key = ("hs-a", "account", "9")
    writes, _ = plan(
        {
            key: {
                "channel_owner": "dist-b",
                "conflict_reason": "dist-b registered first",
                "customer_id": "cus_1",
                "conflict_flag": True,
            }
        },
        {key: {}},
    )
    by_field = {w.field: w.value for w in writes}
    assert by_field["channel_owner"] == ANOTHER_PARTY
    assert "channel_conflict_reason" not in by_field  # names dist-b: dropped
    assert "cs_customer" not in by_field
    assert by_field["channel_conflict"] == "true"


def test_records_gone_from_the_store_get_no_writes() -> None:
    writes, _ = plan({("sf", "account", "gone"): {"conflict_flag": True}}, {})
    assert writes == []


def test_same_value_across_encodings() -> None:
    assert same_value("true", True)
    assert same_value("12.50", 12.5)
    assert same_value("", None)
    assert not same_value("12.5", "12.51")
    assert not same_value("false", True)


def test_partner_sees_no_owner_when_nobody_owns_the_customer() -> None:
    key = ("hs-a", "account", "9")
    writes, _ = plan({key: {"channel_owner": None}}, {key: {"channel_owner": "dist-a"}})
    assert [(w.field, w.value) for w in writes] == [("channel_owner", None)]


def test_pull_intervals_space_out_pulls_with_a_little_slack() -> None:
    from datetime import UTC, datetime, timedelta

    from sync.cycle import Runtime, _not_due

    rt = Runtime(
        name="hs",
        vendor="hubspot",
        role="distributor",
        distributor_id="d",
        channel_manager=None,
        connector=None,  # type: ignore[arg-type]  # unused here
        mapping=None,  # type: ignore[arg-type]  # unused here
        pull_interval=timedelta(minutes=10),
    )
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert not _not_due(rt, None, now)  # never pulled: due
    assert _not_due(rt, {"hs": now - timedelta(minutes=5)}, now)
    assert not _not_due(rt, {"hs": now - timedelta(minutes=9, seconds=30)}, now)
