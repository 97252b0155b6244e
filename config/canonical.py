"""The canonical vocabulary: fields a mapping may read into, and outputs it may write from.

Every mapping file names its vendor fields against these keys; anything else is a
config error caught at load time.
"""

from __future__ import annotations

from typing import Final

# Canonical field -> value type after conversion.
ACCOUNT_FIELDS: Final[dict[str, str]] = {
    "name": "string",
    "domain": "string",  # registrable web domain or a website URL (normalised on read)
    "country": "string",  # ISO 3166-1 alpha-2 after value mapping
    "duns": "string",
    "vat_id": "string",
    "channel_owner": "string",  # distributor id, or "direct"
    "owner_user": "string",
    "partner_id": "string",  # set on a manufacturer's account that *is* a distributor
    "created_at": "datetime",
    "modified_at": "datetime",
}

OPPORTUNITY_FIELDS: Final[dict[str, str]] = {
    "name": "string",
    "account_ref": "string",  # external id of the account in the same connection
    "amount": "decimal",
    "currency": "string",
    "stage_raw": "string",
    "stage_category": "string",  # open | won | lost
    "close_date": "date",
    "created_at": "datetime",
    "modified_at": "datetime",
    "last_activity_at": "datetime",
    "owner_user": "string",
    "channel_owner": "string",
    "registered_by": "string",  # distributor id (Partner Community field in an internal org)
    "registered_at": "datetime",
    "registration_expires_at": "date",
    "registration_status": "string",
    "registration_decision": "string",  # extend | reassign | release (set by a channel manager)
    "reassign_to": "string",  # distributor id when the decision is reassign
}

# Outputs the engine can write back -> value type.
ACCOUNT_OUTPUTS: Final[dict[str, str]] = {
    "channel_owner": "string",
    "conflict_flag": "boolean",
    "conflict_reason": "string",
    "customer_id": "string",
    "scorecard_win_rate_registered": "decimal",
    "scorecard_active_registrations": "integer",
    "scorecard_verdict": "string",
}

OPPORTUNITY_OUTPUTS: Final[dict[str, str]] = {
    "channel_owner": "string",
    "conflict_flag": "boolean",
    "conflict_reason": "string",
    "registration_status": "string",
    "registration_expires_at": "date",
    "routed_to": "string",
    "registration_decision": "string",  # cleared once a decision has been carried out
}

FIELDS_BY_ENTITY: Final[dict[str, dict[str, str]]] = {
    "account": ACCOUNT_FIELDS,
    "opportunity": OPPORTUNITY_FIELDS,
}
OUTPUTS_BY_ENTITY: Final[dict[str, dict[str, str]]] = {
    "account": ACCOUNT_OUTPUTS,
    "opportunity": OPPORTUNITY_OUTPUTS,
}

# Outputs people also edit: the default write policy is that a human change wins.
HUMAN_WINS_BY_DEFAULT: Final[frozenset[str]] = frozenset({"channel_owner", "routed_to"})

STAGE_CATEGORIES: Final[frozenset[str]] = frozenset({"open", "won", "lost"})
REGISTRATION_STATES: Final[tuple[str, ...]] = (
    "pending",
    "active",
    "expiring",
    "expired",
    "extended",
    "released",
    "won",
    "lost",
)
DECISIONS: Final[frozenset[str]] = frozenset({"extend", "reassign", "release"})
DIRECT: Final[str] = "direct"
