"""The scorecards' value types and calendar arithmetic (:mod:`rules.scorecards` computes
them; the report formats read them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.model import RecordKey

OUTCOMES = ("won", "lost", "expired", "released", "open")
PAPER_PARTNER, HEALTHY, INSUFFICIENT = "paper_partner", "healthy", "insufficient_data"
CENT, RATE = Decimal("0.01"), Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class PaperPartnerThresholds:
    min_registrations: int = 20
    max_win_rate: Decimal = Decimal("0.15")
    min_history_months: int = 12


@dataclass(frozen=True, slots=True)
class ScorecardConfig:
    """``territories``: territory -> countries; ``currency_rates[X]``: one X in base."""

    period_months: int = 18
    territories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    base_currency: str = "EUR"
    currency_rates: Mapping[str, Decimal] = field(default_factory=dict)
    paper_partner: PaperPartnerThresholds = field(default_factory=PaperPartnerThresholds)
    distributor_countries: Mapping[str, str] = field(default_factory=dict)

    def territory_of(self, country: str | None) -> str | None:
        for name, countries in self.territories.items():
            if country in countries:
                return name
        return None

    @classmethod
    def from_settings(cls, settings: Any) -> ScorecardConfig:
        """Build from ``config.models.ScorecardSettings`` (read by attribute)."""
        paper = settings.paper_partner
        return cls(
            period_months=settings.period,
            territories=dict(settings.territories),
            base_currency=settings.base_currency,
            currency_rates=dict(settings.currency_rates),
            paper_partner=PaperPartnerThresholds(
                min_registrations=paper.min_registrations,
                max_win_rate=Decimal(str(paper.max_win_rate)),
                min_history_months=paper.min_history,
            ),
        )


@dataclass(frozen=True, slots=True)
class Scorecard:
    distributor_id: str
    territory: str | None
    active_registrations: int
    active_pipeline: Decimal
    outcomes: Mapping[str, int]  # won, lost, expired, released, open
    win_rate_registered: Decimal | None
    win_rate_unregistered: Decimal | None
    unregistered_won: int
    unregistered_closed: int
    won_deals: int
    won_amount: Decimal
    average_won: Decimal | None
    peer_average_won: Decimal | None
    versus_peers: Decimal | None  # average_won / peer_average_won
    days_to_close: tuple[int, ...]  # sorted
    days_to_close_median: float | None
    days_to_close_p90: int | None
    conflicts: Mapping[str, int]
    history_months: int
    verdict: str
    verdict_figures: Mapping[str, Any]
    active_by_month: tuple[int, ...]  # registrations active at each ScorecardReport.months

    @property
    def registrations(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True, slots=True)
class ScorecardReport:
    generated_at: datetime
    period_start: datetime
    period_months: int
    base_currency: str
    rates_used: Mapping[str, Decimal]  # currencies met in the data and the rate applied
    scorecards: tuple[Scorecard, ...]  # ranked: won amount, then registered win rate
    months: tuple[datetime, ...]  # instants of the "active over time" series
    skipped: tuple[tuple[RecordKey, str], ...]
    territory: str | None = None


@dataclass(slots=True)
class Tally:
    """One distributor's sums while the deals pass."""

    active: int = 0
    pipeline: Decimal = Decimal(0)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    unregistered_won: int = 0
    unregistered_closed: int = 0
    won: int = 0
    won_amount: Decimal = Decimal(0)
    days: list[int] = field(default_factory=list)
    first_registered: datetime | None = None
    active_delta: list[int] = field(default_factory=list)


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic, clamping the day (31 March - 1 month = 28/29 February)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    last_day = (date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def months_between(start: datetime, end: datetime) -> int:
    """Whole calendar months from ``start`` to ``end``."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - 1 if add_months(start, months) > end else months
