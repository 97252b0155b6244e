"""Scorecards over a fixture whose every figure is known by construction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from rules.model import AccountFact, Finding, OpportunityFact, Policy, RecordKey, Snapshot
from rules.scorecards import (
    PaperPartnerThresholds,
    ScorecardConfig,
    ScorecardReport,
    add_months,
    compute_scorecards,
    months_between,
    scorecard_desired,
    scorecard_outputs,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy(registration_term=90 * DAY, inactivity_limit=365 * DAY, warning_window=14 * DAY)
CONFIG = ScorecardConfig(
    period_months=18,
    territories={"DACH": ("DE", "AT", "CH"), "NORDICS": ("SE", "NO")},
    base_currency="EUR",
    currency_rates={"USD": Decimal("0.9"), "CHF": Decimal("1.05")},
    paper_partner=PaperPartnerThresholds(
        min_registrations=20, max_win_rate=Decimal("0.15"), min_history_months=12),
)
_serial = iter(range(1, 10_000))


def deal(
    distributor: str, *, registered_days_ago: int | None = None, stage: str = "open",
    amount: str = "1000", currency: str = "EUR", closes_after: int | None = None,
    created_days_ago: int = 50, **fields: object,
) -> OpportunityFact:
    registered_at = NOW - registered_days_ago * DAY if registered_days_ago is not None else None
    start = registered_at or NOW - created_days_ago * DAY
    close = (start + closes_after * DAY).date() if closes_after is not None else None
    return OpportunityFact(
        key=RecordKey(distributor, "opportunity", f"o{next(_serial)}"), customer_id="C",
        role="distributor", distributor_id=distributor, account_key=None, party=distributor,
        amount=Decimal(amount), currency=currency, stage_category=stage,  # type: ignore[arg-type]  # test data
        close_date=close, created_at=start, last_activity_at=start,
        registered_by=distributor if registered_at else None, registered_at=registered_at,
        **fields,  # type: ignore[arg-type]  # test data
    )


def partner_account(distributor: str, country: str) -> AccountFact:
    return AccountFact(RecordKey("sf-main", "account", f"p-{distributor}"), None, "internal",
                       None, country=country, partner_id=distributor)


def fixture() -> tuple[Snapshot, list[Finding]]:
    d1 = [  # DACH (DE): a healthy seller with too few registrations for a verdict
        deal("D1", registered_days_ago=200, stage="won", amount="10000", closes_after=30),
        deal("D1", registered_days_ago=200, stage="won", amount="20000", closes_after=60),
        deal("D1", registered_days_ago=200, stage="won", amount="10000", currency="USD",
             closes_after=90),
        deal("D1", registered_days_ago=200, stage="won", amount="5000", currency="CHF",
             closes_after=120),
        deal("D1", registered_days_ago=150, stage="lost", closes_after=10),
        deal("D1", registered_days_ago=100),  # expired (90-day term)
        deal("D1", registered_days_ago=10, amount="1000"),  # active
        deal("D1", registered_days_ago=10, amount="2000", currency="USD"),  # active
        deal("D1", registered_days_ago=700, stage="won", amount="99999", closes_after=5),
        deal("D1", stage="won", amount="3000"), deal("D1", stage="won", amount="3000"),
        deal("D1", stage="lost"), deal("D1", stage="lost"),
        deal("D1", stage="won", created_days_ago=600),  # before the period
    ]
    d2 = [  # DACH (AT): unregistered sales only; one amount in a currency without a rate
        deal("D2", stage="won", amount="12000", created_days_ago=30),
        deal("D2", stage="won", amount="5000000", currency="JPY", created_days_ago=30),
    ]
    d4 = [  # DACH (DE): the paper partner, 20 registrations over 13 months, 2 won
        deal("D4", registered_days_ago=400, stage="won", closes_after=40),
        deal("D4", registered_days_ago=390, stage="won", closes_after=50),
        *[deal("D4", registered_days_ago=300 - n) for n in range(10)],
        *[deal("D4", registered_days_ago=250, stage="lost", closes_after=20) for _ in range(5)],
        *[deal("D4", registered_days_ago=200, registration_status="released",
               registration_expires_at=date(2026, 1, 1)) for _ in range(3)],
    ]
    d3 = [deal("D3", registered_days_ago=100, stage="won", amount="7000", closes_after=7)]
    accounts = [partner_account("D1", "DE"), partner_account("D2", "AT"),
                partner_account("D4", "DE"), partner_account("D3", "SE"),
                AccountFact(RecordKey("D1", "account", "p-D4"), None, "distributor", "D1",
                            partner_id="D4")]
    subject = RecordKey("D4", "opportunity", "x")
    findings = [
        Finding("channel_vs_channel", "C", subject, "conflict.channel_vs_channel", (),
                {"parties": ("D4", "D1")}, NOW - DAY),
        Finding("direct_vs_channel", "C", subject, "conflict.direct_vs_channel", (),
                {"parties": ("direct", "D1")}, NOW - 2 * DAY),
        Finding("direct_vs_channel", "C", subject, "conflict.direct_vs_channel", (),
                {"parties": ("direct", "D1")}, NOW - 800 * DAY),  # before the period
        Finding("registration_expired", "C", subject, "registration.term", (),
                {"holder": "D1"}, NOW),
    ]
    return Snapshot(accounts, [*d1, *d2, *d4, *d3]), findings


def report() -> ScorecardReport:
    snapshot, findings = fixture()
    return compute_scorecards(snapshot, POLICY, NOW, CONFIG, findings=findings)


def test_ranking_period_rates_and_skipped_records() -> None:
    result = report()
    assert result.period_start == datetime(2024, 12, 1, 12, tzinfo=UTC)
    assert [c.distributor_id for c in result.scorecards] == ["D1", "D2", "D3", "D4"]
    assert dict(result.rates_used) == {"CHF": Decimal("1.05"), "EUR": 1, "USD": Decimal("0.9")}
    assert [(key.connection, why) for key, why in result.skipped] == [
        ("D2", "no exchange rate for JPY in config")]
    assert len(result.months) == 18 and result.months[-1] == NOW


def test_registered_deal_figures_with_currency_conversion() -> None:
    d1 = report().scorecards[0]
    assert (d1.active_registrations, d1.active_pipeline) == (2, Decimal("2800.00"))
    assert dict(d1.outcomes) == {"won": 4, "lost": 1, "expired": 1, "released": 0, "open": 2}
    assert d1.win_rate_registered == Decimal("0.6667")  # 4 of 6 decided
    assert (d1.unregistered_won, d1.unregistered_closed) == (2, 4)
    assert d1.win_rate_unregistered == Decimal("0.5000")
    # 10000 + 20000 + 10000 USD * 0.9 + 5000 CHF * 1.05 + 3000 + 3000 = 50250 over 6
    assert (d1.won_deals, d1.won_amount, d1.average_won) == (
        6, Decimal("50250.00"), Decimal("8375.00"))
    assert d1.days_to_close == (10, 30, 60, 90, 120)
    assert (d1.days_to_close_median, d1.days_to_close_p90) == (60.0, 120)
    assert dict(d1.conflicts) == {"channel_vs_channel": 1, "direct_vs_channel": 1}


def test_territory_comparison_pools_the_other_distributors() -> None:
    cards = {c.distributor_id: c for c in report().scorecards}
    assert {d: c.territory for d, c in cards.items()} == {
        "D1": "DACH", "D2": "DACH", "D3": "NORDICS", "D4": "DACH"}
    # peers of D1: D2 (12000 over 1) and D4 (1000 + 1000 over 2) = 14000 / 3
    assert cards["D1"].peer_average_won == Decimal("4666.67")
    assert cards["D1"].versus_peers == Decimal("1.7946")
    # peers of D2: D1 (50250 over 6) and D4 (2000 over 2) = 52250 / 8
    assert (cards["D2"].average_won, cards["D2"].peer_average_won) == (
        Decimal("12000.00"), Decimal("6531.25"))
    assert cards["D4"].peer_average_won == Decimal("8892.86")  # 62250 / 7
    assert (cards["D3"].peer_average_won, cards["D3"].versus_peers) == (None, None)
    only = compute_scorecards(fixture()[0], POLICY, NOW, CONFIG, territory="NORDICS")
    assert [c.distributor_id for c in only.scorecards] == ["D3"]


def test_paper_partner_verdict_with_its_figures() -> None:
    cards = {c.distributor_id: c for c in report().scorecards}
    d4 = cards["D4"]
    assert dict(d4.outcomes) == {"won": 2, "lost": 5, "expired": 10, "released": 3, "open": 0}
    assert (d4.registrations, d4.win_rate_registered, d4.history_months) == (
        20, Decimal("0.1000"), 13)
    assert d4.verdict == "paper_partner"
    assert dict(d4.verdict_figures) == {
        "registrations": 20, "min_registrations": 20, "win_rate_registered": Decimal("0.1000"),
        "max_win_rate": Decimal("0.15"), "history_months": 13, "min_history_months": 12,
    }
    assert cards["D1"].verdict == "insufficient_data"  # 8 registrations
    assert cards["D1"].history_months == 23  # from its first registration, before the period
    assert cards["D2"].verdict == "insufficient_data"  # none at all
    generous = ScorecardConfig(
        period_months=18, territories=CONFIG.territories, currency_rates=CONFIG.currency_rates,
        paper_partner=PaperPartnerThresholds(min_registrations=20,
                                             max_win_rate=Decimal("0.10"),
                                             min_history_months=12))
    again = compute_scorecards(fixture()[0], POLICY, NOW, generous)
    assert {c.distributor_id: c.verdict for c in again.scorecards}["D4"] == "healthy"


def test_active_registrations_over_time() -> None:
    months = report().months
    d1 = report().scorecards[0]
    at = dict(zip(months, d1.active_by_month, strict=True))
    # on 1 Jan 2026 three of the four won registrations (13 Nov) are still running
    assert at[datetime(2026, 1, 1, 12, tzinfo=UTC)] == 3
    # on 1 Apr only the one that later expired (21 Feb to 22 May)
    assert at[datetime(2026, 4, 1, 12, tzinfo=UTC)] == 1
    assert at[NOW] == 2


def test_headline_outputs_go_to_internal_partner_accounts_only() -> None:
    snapshot, findings = fixture()
    result = compute_scorecards(snapshot, POLICY, NOW, CONFIG, findings=findings)
    assert scorecard_outputs(result)["D4"] == {
        "scorecard_win_rate_registered": Decimal("0.1000"),
        "scorecard_active_registrations": 0, "scorecard_verdict": "paper_partner"}
    desired = scorecard_desired(snapshot.accounts, result)
    assert set(desired) == {RecordKey("sf-main", "account", f"p-{d}")
                            for d in ("D1", "D2", "D3", "D4")}
    assert desired[RecordKey("sf-main", "account", "p-D1")]["scorecard_active_registrations"] == 2


def test_calendar_month_arithmetic() -> None:
    assert add_months(datetime(2026, 3, 31, tzinfo=UTC), -1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 6, 1, tzinfo=UTC), -18) == datetime(2024, 12, 1, tzinfo=UTC)
    assert months_between(datetime(2025, 4, 27, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)) == 13
    assert months_between(datetime(2025, 6, 2, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)) == 11
