"""Value types the channel rules read (facts, policy, snapshot) and write (findings, reasons)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple, TypeVar

from config.canonical import DIRECT

Role = Literal["internal", "distributor"]
StageCategory = Literal["open", "won", "lost"]
Precedence = Literal["earliest_registration", "channel_owner", "largest_amount"]
MidSaleSwitch = Literal["keep_current", "new_owner"]
Audience = Literal["internal", "partner"]
_T = TypeVar("_T")

PRECEDENCES: Final[frozenset[str]] = frozenset(
    {"earliest_registration", "channel_owner", "largest_amount"}
)


class RecordKey(NamedTuple):
    """One record in one CRM connection.

    A named tuple rather than a dataclass: it keys every dict the rules and the planner
    build over millions of records, and tuple hashing and equality run in C."""

    connection: str
    entity: str  # account | opportunity
    external_id: str


@dataclass(frozen=True, slots=True)
class AccountFact:
    """An account as read and matched. ``distributor_id`` is the connection's distributor
    (None for an internal connection). ``channel_owner_is_ours`` is true when the value read
    equals what the middleware last wrote (from the write ledger): only a value a person set
    counts as an explicit owner."""

    key: RecordKey
    customer_id: str | None
    role: Role
    distributor_id: str | None
    name: str | None = None
    country: str | None = None
    channel_owner: str | None = None
    partner_id: str | None = None
    owner_user: str | None = None
    deleted: bool = False
    channel_owner_is_ours: bool = False


@dataclass(frozen=True, slots=True)
class OpportunityFact:
    """An opportunity as read. ``party`` is who pursues it: ``"direct"`` for an internal deal
    without ``registered_by``, else a distributor id. Datetimes are timezone-aware (UTC).
    ``registration_expiry_is_ours`` is false when the expiry date read is not the one the
    middleware last wrote (from the write ledger): a date a person typed in never counts as
    an extension in force."""

    key: RecordKey
    customer_id: str | None
    role: Role
    distributor_id: str | None
    account_key: RecordKey | None
    party: str
    name: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    stage_category: StageCategory = "open"
    close_date: date | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    last_activity_at: datetime | None = None
    owner_user: str | None = None
    registered_by: str | None = None
    registered_at: datetime | None = None
    registration_expires_at: date | None = None
    registration_expiry_is_ours: bool = True
    registration_status: str | None = None
    registration_decision: str | None = None
    reassign_to: str | None = None
    deleted: bool = False


def positional_builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen, slotted dataclass ``cls`` from its field values in order.

    For building millions of facts: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__`` (about 3 us for an opportunity). This fills a mutable
    twin with the very same slots (plain attribute stores) and then makes it a ``cls``:
    the same object, equal and hashing like one built the usual way, frozen from then on."""
    # a dataclass (the slots check below fails otherwise)
    shape = {f.name: Any for f in fields(cls)}  # type: ignore[arg-type]
    twin: Any = dataclass(slots=True)(type(f"_Mutable{cls.__name__}", (), {
        "__annotations__": shape}))
    if twin.__slots__ != getattr(cls, "__slots__", None):
        raise TypeError(f"{cls.__name__}: the twin's slots differ")

    def build(*values: Any) -> _T:
        made = twin(*values)
        made.__class__ = cls
        return made

    return build


@dataclass(frozen=True, slots=True)
class RegistrationTerms:
    """How long a registration lasts, when inactivity ends it, and when to warn."""

    registration_term: timedelta
    inactivity_limit: timedelta
    warning_window: timedelta


@dataclass(frozen=True, slots=True)
class TermOverride:
    """Per tier or per distributor; a term left out falls back to the next level."""

    registration_term: timedelta | None = None
    inactivity_limit: timedelta | None = None
    warning_window: timedelta | None = None
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The channel policy. ``direct_after_release``: how long after a release direct sales
    may own the customer (None: never by itself, a channel manager decides).
    ``mid_sale_switch``: when a channel manager names an owner other than the holder of
    the registration that prevails under the policy (a switch mid-sale),
    ``keep_current`` lets that holder's registration run unflagged, ``new_owner`` flags
    it; other distributors' registrations lose to the owner either way.
    ``channel_managers``: internal connection -> user."""

    registration_term: timedelta = timedelta(days=90)
    inactivity_limit: timedelta = timedelta(days=30)
    warning_window: timedelta = timedelta(days=14)
    conflict_precedence: Precedence = "earliest_registration"
    direct_after_release: timedelta | None = timedelta(0)
    mid_sale_switch: MidSaleSwitch = "keep_current"
    channel_managers: Mapping[str, str] = field(default_factory=dict)
    tiers: Mapping[str, TermOverride] = field(default_factory=dict)
    distributors: Mapping[str, TermOverride] = field(default_factory=dict)
    _terms_cache: dict[str | None, RegistrationTerms] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("registration_term", "inactivity_limit"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"policy.{name} must be positive, got {getattr(self, name)}")
        if self.warning_window < timedelta(0):
            raise ValueError(f"policy.warning_window must not be negative: {self.warning_window}")
        if self.conflict_precedence not in PRECEDENCES:
            raise ValueError(f"policy.conflict_precedence unknown: {self.conflict_precedence!r}")

    def terms_for(self, distributor_id: str | None) -> RegistrationTerms:
        """Distributor override, then its tier, then the policy defaults."""
        cached = self._terms_cache.get(distributor_id)
        if cached is None:
            cached = self._terms_cache[distributor_id] = self._resolve_terms(distributor_id)
        return cached

    def _resolve_terms(self, distributor_id: str | None) -> RegistrationTerms:
        own = self.distributors.get(distributor_id or "")
        tier = self.tiers.get(own.tier) if own is not None and own.tier else None

        def pick(name: str) -> timedelta:
            for level in (own, tier):
                value = getattr(level, name) if level is not None else None
                if value is not None:
                    return value
            return getattr(self, name)

        return RegistrationTerms(
            registration_term=pick("registration_term"),
            inactivity_limit=pick("inactivity_limit"),
            warning_window=pick("warning_window"),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        """Build from ``config.models.Policy`` (read by attribute, so no import cycle)."""

        def override(item: Any) -> TermOverride:
            return TermOverride(
                registration_term=item.registration_term,
                inactivity_limit=item.inactivity_limit,
                warning_window=item.warning_window,
                tier=getattr(item, "tier", None),
            )

        return cls(
            registration_term=settings.registration_term,
            inactivity_limit=settings.inactivity_limit,
            warning_window=settings.warning_window,
            conflict_precedence=settings.conflict_precedence,
            direct_after_release=settings.direct_after_release,
            mid_sale_switch=settings.mid_sale_switch,
            channel_managers=dict(settings.channel_manager),
            tiers={name: override(t) for name, t in settings.tiers.items()},
            distributors={name: override(d) for name, d in settings.distributors.items()},
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every matched record the rules look at."""

    accounts: Sequence[AccountFact]
    opportunities: Sequence[OpportunityFact]


# Conflict kinds, most serious first: a record touched by several shows the first.
DIRECT_VS_CHANNEL: Final = "direct_vs_channel"
CHANNEL_VS_CHANNEL: Final = "channel_vs_channel"
UNREGISTERED_DEAL: Final = "unregistered_deal"
REGISTRATION_ON_DIRECT_CUSTOMER: Final = "registration_on_direct_customer"
DIRECT_ON_RELEASED_CUSTOMER: Final = "direct_on_released_customer"
CONFLICT_KINDS: Final[tuple[str, ...]] = (
    DIRECT_VS_CHANNEL,
    CHANNEL_VS_CHANNEL,
    UNREGISTERED_DEAL,
    REGISTRATION_ON_DIRECT_CUSTOMER,
    DIRECT_ON_RELEASED_CUSTOMER,
)

_INTERNAL_TEXT: Final[dict[str, str]] = {
    DIRECT_VS_CHANNEL: "Direct opportunity on a customer held by {holder}{since}",
    CHANNEL_VS_CHANNEL: "{subject} competes with {holder}, who holds this customer{since}",
    UNREGISTERED_DEAL: "{subject} has an unregistered deal on a customer held by {holder}{since}",
    REGISTRATION_ON_DIRECT_CUSTOMER: "{subject} registered a customer assigned to direct sales",
    DIRECT_ON_RELEASED_CUSTOMER: (
        "Direct opportunity on a customer released by {holder}{since}; "
        "a channel manager must assign it"
    ),
}
PARTNER_TEXT_OTHER: Final = "Another party is active on this customer"
PARTNER_TEXT_YOURS: Final = "Another party is active on this customer; your claim stands"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a record is flagged: the conflict kind, the party the record belongs to
    (``subject``), the party that prevails (``holder``) and since when it holds."""

    kind: str
    subject: str
    holder: str | None
    since: date | None = None

    @property
    def parties(self) -> tuple[str, ...]:
        """Everyone involved, the record's own party first."""
        if self.holder is None or self.holder == self.subject:
            return (self.subject,)
        return (self.subject, self.holder)

    def render(self, audience: Audience, viewer_distributor_id: str | None = None) -> str:
        """Internal text names the parties; partner text never names anyone else."""
        if audience == "partner":
            if viewer_distributor_id is not None and viewer_distributor_id == self.holder:
                return PARTNER_TEXT_YOURS
            return PARTNER_TEXT_OTHER
        since = f" since {self.since.isoformat()}" if self.since else ""
        template = _INTERNAL_TEXT.get(self.kind, "{subject}: " + self.kind + "{since}")
        return template.format(
            subject=_party_label(self.subject),
            holder=_party_label(self.holder),
            since=since,
        )

    def __str__(self) -> str:
        return self.render("internal")


def _party_label(party: str | None) -> str:
    if party is None:
        return "nobody"
    return "direct sales" if party == DIRECT else party


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the rules noticed, with the records that prove it."""

    kind: str
    customer_id: str | None
    subject: RecordKey
    rule: str
    evidence: tuple[RecordKey, ...]
    details: Mapping[str, Any]
    at: datetime
