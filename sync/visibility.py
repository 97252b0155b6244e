"""Partner isolation, enforced in one place: what may be written to a connection.

A distributor's CRM receives facts about that distributor's own records only. It never
gets another distributor's id, a direct rep, amounts from another CRM, customer ids or
internal scores; reasons are rendered for the partner audience. Everything the planner
sends to a distributor connection passes through :func:`visible_value`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PARTNER_OUTPUTS = frozenset(
    {
        "channel_owner",
        "conflict_flag",
        "conflict_reason",
        "registration_status",
        "registration_expires_at",
        "registration_decision",
    }
)
ANOTHER_PARTY = "another party"

_DROP = object()


@dataclass(frozen=True, slots=True)
class Audience:
    """Who reads a connection: the manufacturer (``internal``) or one distributor."""

    role: str  # internal | distributor
    distributor_id: str | None = None

    @property
    def is_partner(self) -> bool:
        return self.role == "distributor"


@dataclass(frozen=True, slots=True)
class Secrets:
    """Values that must never reach a partner: other parties, reps, customer ids."""

    distributor_ids: frozenset[str]
    internal_users: frozenset[str]

    @classmethod
    def of(cls, distributors: Iterable[str], users: Iterable[str]) -> Secrets:
        # very short ids (Pipedrive's user 7) would match inside unrelated text
        return cls(
            frozenset(d for d in distributors if d),
            frozenset(u for u in users if u and len(u) >= 4),
        )


def render(value: Any, audience: Audience) -> Any:
    """Reasons are structured until here; render them for the audience."""
    renderer = getattr(value, "render", None)
    if callable(renderer):
        return renderer("partner" if audience.is_partner else "internal", audience.distributor_id)
    return value


def visible_value(output: str, value: Any, audience: Audience, secrets: Secrets) -> Any:
    """The value as this audience may see it, or ``DROP`` when it may not see it at all."""
    value = render(value, audience)
    if not audience.is_partner:
        return value
    if output not in PARTNER_OUTPUTS:
        return _DROP
    if output == "channel_owner":
        if value is None:
            return None  # nobody owns the customer yet: nothing to hide
        return value if value == audience.distributor_id else ANOTHER_PARTY
    if isinstance(value, str) and _names_someone_else(value, audience, secrets):
        return _DROP
    return value


def is_dropped(value: Any) -> bool:
    return value is _DROP


def _names_someone_else(text: str, audience: Audience, secrets: Secrets) -> bool:
    lowered = text.lower()
    others = (d for d in secrets.distributor_ids if d != audience.distributor_id)
    return any(name.lower() in lowered for name in (*others, *secrets.internal_users))
