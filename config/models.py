"""Settings sections other than connections: store, schedule, policy, outbox, matching,
notifications, scorecards, logging; and the ``Settings`` root."""

from __future__ import annotations

from dataclasses import field
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic.dataclasses import dataclass

from config.connections import Connection
from config.secrets import Secret
from config.types import (
    STRICT,
    CountryCode,
    CurrencyCode,
    Duration,
    DurationOrNever,
    HttpUrl,
    ListenAddress,
    Months,
)

DEFAULT_STORE_URL = "sqlite:///channelsync.db"
_STORE_SCHEMES = ("sqlite://", "postgresql://", "postgresql+psycopg://")


def _check_store_url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(_STORE_SCHEMES):
        raise ValueError(
            "store URL must start with sqlite:///, postgresql+psycopg:// or postgresql://"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class StoreSettings:
    url: Annotated[str, BeforeValidator(_check_store_url)] = DEFAULT_STORE_URL


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class ScheduleSettings:
    cycle_interval: Duration = timedelta(minutes=5)
    pull_interval: Duration | None = None  # default per connection; None = every cycle
    health_listen: ListenAddress = "127.0.0.1:8787"
    stale_after: Duration = timedelta(minutes=30)


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class RegistrationTerms:
    """How long a registration lasts, when inactivity ends it, when to warn."""

    registration_term: Duration = timedelta(days=90)
    inactivity_limit: Duration = timedelta(days=30)
    warning_window: Duration = timedelta(days=14)


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class TermOverrides:
    """Per tier or per distributor: any term left out falls back to the next level."""

    registration_term: Duration | None = None
    inactivity_limit: Duration | None = None
    warning_window: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class DistributorPolicy:
    tier: str | None = None
    registration_term: Duration | None = None
    inactivity_limit: Duration | None = None
    warning_window: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class Policy:
    registration_term: Duration = timedelta(days=90)
    inactivity_limit: Duration = timedelta(days=30)
    warning_window: Duration = timedelta(days=14)
    conflict_precedence: Literal["earliest_registration", "channel_owner", "largest_amount"] = (
        "earliest_registration"
    )
    # None: never by itself (a channel manager decides); timedelta(0): right after release.
    direct_after_release: DurationOrNever = timedelta(0)
    mid_sale_switch: Literal["keep_current", "new_owner"] = "keep_current"
    channel_manager: dict[str, str] = field(default_factory=dict)  # connection -> user id
    tiers: dict[str, TermOverrides] = field(default_factory=dict)
    distributors: dict[str, DistributorPolicy] = field(default_factory=dict)

    def terms_for(self, distributor_id: str | None) -> RegistrationTerms:
        """Distributor override, then its tier, then the policy defaults."""
        own = self.distributors.get(distributor_id or "")
        tier = self.tiers.get(own.tier) if own and own.tier else None

        def pick(name: str) -> timedelta:
            for level in (own, tier):
                value = getattr(level, name, None) if level else None
                if value is not None:
                    return value
            return getattr(self, name)

        return RegistrationTerms(
            registration_term=pick("registration_term"),
            inactivity_limit=pick("inactivity_limit"),
            warning_window=pick("warning_window"),
        )


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class OutboxSettings:
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_initial: Duration = timedelta(minutes=1)
    backoff_max: Duration = timedelta(hours=6)


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class MatchingSettings:
    """Name similarity (0-100): at or above ``fuzzy_threshold`` the same customer; within
    ``review_band`` points below it, a pair for a person to review."""

    fuzzy_threshold: Annotated[float, Field(gt=0, le=100)] = 90.0
    review_band: Annotated[float, Field(ge=0, lt=100)] = 5.0

    @property
    def review_floor(self) -> float:
        return max(0.0, self.fuzzy_threshold - self.review_band)


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class SecretHeader:
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$")]
    value: Secret


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class WebhookSettings:
    url: HttpUrl
    secret_header: SecretHeader | None = None
    timeout: Duration = timedelta(seconds=10)


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class NotificationSettings:
    webhook: WebhookSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class PaperPartnerThresholds:
    min_registrations: Annotated[int, Field(ge=1)] = 20
    max_win_rate: Annotated[float, Field(ge=0, le=1)] = 0.15
    min_history: Months = 12


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class ScorecardSettings:
    """``currency_rates[X]`` = value of one unit of X in ``base_currency``."""

    period: Months = 18
    territories: dict[str, tuple[CountryCode, ...]] = field(default_factory=dict)
    base_currency: CurrencyCode = "EUR"
    currency_rates: dict[CurrencyCode, Annotated[Decimal, Field(gt=0)]] = field(
        default_factory=dict
    )
    paper_partner: PaperPartnerThresholds = field(default_factory=PaperPartnerThresholds)

    def territory_of(self, country: str | None) -> str | None:
        for name, countries in self.territories.items():
            if country in countries:
                return name
        return None


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class LoggingSettings:
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class Settings:
    """Everything in ``channelsync.yaml``, validated and frozen."""

    connections: Annotated[tuple[Connection, ...], Field(min_length=1)]
    store: StoreSettings = field(default_factory=StoreSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    policy: Policy = field(default_factory=Policy)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    matching: MatchingSettings = field(default_factory=MatchingSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    scorecards: ScorecardSettings = field(default_factory=ScorecardSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def connection(self, name: str) -> Connection:
        for conn in self.connections:
            if conn.name == name:
                return conn
        raise KeyError(name)

    @property
    def enabled_connections(self) -> tuple[Connection, ...]:
        return tuple(c for c in self.connections if c.enabled)

    def pull_interval(self, name: str) -> timedelta:
        """The connection's own interval, else the schedule default, else every cycle."""
        conn = self.connection(name)
        return conn.pull_interval or self.schedule.pull_interval or self.schedule.cycle_interval

    def channel_manager_for(self, name: str) -> str | None:
        """Vendor user id that routed inquiries go to in internal connection ``name``."""
        return self.connection(name).channel_manager or self.policy.channel_manager.get(name)
