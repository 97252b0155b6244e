"""Findings as the store keeps them: rows, notification events, JSON-safe evidence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from rules.model import CONFLICT_KINDS, Finding
from state.rows import FindingIn, NotificationIn

NOTIFY_KINDS = frozenset({"registration_expiring", "registration_expired"})


def finding_key(f: Finding) -> str:
    k = f.subject
    return f"{f.kind}:{k.connection}:{k.entity}:{k.external_id}"


def finding_rows(findings: Iterable[Finding]) -> list[FindingIn]:
    rows: dict[str, FindingIn] = {}
    for f in findings:
        key = finding_key(f)
        rows[key] = FindingIn(
            key=key,
            kind=f.kind,
            rule=f.rule,
            customer_id=f.customer_id,
            connection=f.subject.connection,
            entity=f.subject.entity,
            external_id=f.subject.external_id,
            evidence={
                "records": [list(k) for k in f.evidence],
                "at": f.at.isoformat(),
                **{k: json_value(v) for k, v in f.details.items()},
            },
        )
    return list(rows.values())


def notifications_for(findings: Iterable[Finding]) -> list[NotificationIn]:
    """One event per registration and state change (the key includes the expiry date)."""
    events = []
    for f in findings:
        if f.kind not in NOTIFY_KINDS:
            continue
        k = f.subject
        expires = f.details.get("expires_at")
        events.append(
            NotificationIn(
                key=f"{f.kind}:{k.connection}:{k.external_id}:{json_value(expires)}",
                kind=f.kind,
                payload={
                    "connection": k.connection,
                    "opportunity": k.external_id,
                    "customer_id": f.customer_id,
                    "holder": json_value(f.details.get("holder")),
                    "expires_at": json_value(expires),
                    "rule": f.rule,
                },
            )
        )
    return events


def json_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # SQLite's JSON gives 1.0 back as 1: one queued value, not two
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):
        # a JSON number, as the store gives it back: 1.0000 and 1 are one queued value
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def stored_findings(store: Any, found: Iterable[Finding] = ()) -> list[Any]:
    """Conflict findings as the store kept them, resolved ones too (for period reports:
    conflicts over months), and those of ``found`` it does not hold yet (a dry run's)."""
    rows = store.findings(kinds=CONFLICT_KINDS)
    kept = {f.key for f in rows}
    return [*(_StoredFinding(f.kind, f.first_seen, f.evidence or {}) for f in rows),
            *(f for f in found if finding_key(f) not in kept)]


@dataclass(frozen=True, slots=True)
class _StoredFinding:
    kind: str
    at: datetime
    details: Mapping[str, Any]


def rules_by_record(findings: Iterable[Finding]) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], list[str]] = {}
    for f in findings:
        for key in (f.subject, *f.evidence):
            rules = out.setdefault(tuple(key), [])  # type: ignore[arg-type]  # NamedTuple
            if f.rule not in rules:
                rules.append(f.rule)
    return {k: ", ".join(v) for k, v in out.items()}


def count_kinds(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return dict(sorted(counts.items()))
