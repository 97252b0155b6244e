"""Scorecard report renderings: terminal table, CSV, JSON (HTML lives in ``report_html``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from rules.model import CONFLICT_KINDS
from rules.scorecards import OUTCOMES, Scorecard, ScorecardReport

FORMATS: Final = ("table", "csv", "json", "html")


def percent(rate: Decimal | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def money(amount: Decimal | None, currency: str = "") -> str:
    if amount is None:
        return "-"
    return f"{amount:,.0f} {currency}".strip()


def rates_text(report: ScorecardReport) -> str:
    others = [f"1 {code} = {rate} {report.base_currency}"
              for code, rate in report.rates_used.items() if code != report.base_currency]
    return f"amounts in {report.base_currency}" + (
        "; rates: " + ", ".join(others) if others else "; no conversion needed")


def period_text(report: ScorecardReport) -> str:
    return (f"{report.period_months} months from {report.period_start.date().isoformat()} "
            f"to {report.generated_at.date().isoformat()}")


def render_table(report: ScorecardReport, *, width: int = 180) -> str:
    """The report as a terminal table (plain text; colour is the console's business)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(build_table(report))
    return console.export_text()


def build_table(report: ScorecardReport) -> Table:
    territory = f", territory {report.territory}" if report.territory else ""
    table = Table(
        title=f"Distributor scorecards: {period_text(report)}{territory}",
        caption=_caption(report),
    )
    for header, justify in (
        ("#", "right"), ("Distributor", "left"), ("Territory", "left"),
        ("Active regs", "right"), ("Pipeline", "right"), ("Won/Lost/Exp/Rel/Open", "center"),
        ("Win reg.", "right"), ("Win non-reg.", "right"), ("Avg won", "right"),
        ("vs peers", "right"), ("Days to close p50/p90", "right"), ("Conflicts", "right"),
        ("Verdict", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]  # literal values
    for rank, card in enumerate(report.scorecards, start=1):
        table.add_row(
            str(rank), card.distributor_id, card.territory or "-",
            str(card.active_registrations), money(card.active_pipeline),
            "/".join(str(card.outcomes[o]) for o in OUTCOMES),
            percent(card.win_rate_registered), percent(card.win_rate_unregistered),
            money(card.average_won), _versus(card), _days(card),
            str(sum(card.conflicts.values())), card.verdict.replace("_", " "),
        )
    return table


def _caption(report: ScorecardReport) -> str:
    skipped = f"; deals without an exchange rate left out of amounts: {len(report.skipped)}" if (
        report.skipped) else ""
    return rates_text(report) + skipped


def _versus(card: Scorecard) -> str:
    return "-" if card.versus_peers is None else f"{card.versus_peers:.2f}x"


def _days(card: Scorecard) -> str:
    if card.days_to_close_median is None:
        return "-"
    return f"{card.days_to_close_median:g}/{card.days_to_close_p90}"


def render_csv(report: ScorecardReport) -> str:
    """One row per distributor, ranked; rates and period repeated on every row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([
        "rank", "distributor", "territory", "active_registrations", "active_pipeline",
        *(f"registrations_{o}" for o in OUTCOMES), "win_rate_registered",
        "win_rate_unregistered", "won_deals", "won_amount", "average_won", "peer_average_won",
        "versus_peers", "days_to_close_median", "days_to_close_p90",
        *(f"conflicts_{k}" for k in CONFLICT_KINDS), "history_months", "verdict",
        "period_start", "period_end", "base_currency", "rates",
    ])
    rates = ";".join(f"{code}={rate}" for code, rate in report.rates_used.items())
    for rank, card in enumerate(report.scorecards, start=1):
        writer.writerow([
            rank, card.distributor_id, card.territory or "", card.active_registrations,
            card.active_pipeline, *(card.outcomes[o] for o in OUTCOMES),
            _blank(card.win_rate_registered), _blank(card.win_rate_unregistered),
            card.won_deals, card.won_amount, _blank(card.average_won),
            _blank(card.peer_average_won), _blank(card.versus_peers),
            _blank(card.days_to_close_median), _blank(card.days_to_close_p90),
            *(card.conflicts.get(k, 0) for k in CONFLICT_KINDS), card.history_months,
            card.verdict, report.period_start.isoformat(), report.generated_at.isoformat(),
            report.base_currency, rates,
        ])
    return out.getvalue()


def _blank(value: object) -> object:
    return "" if value is None else value


def report_data(report: ScorecardReport) -> dict[str, Any]:
    """The report as JSON-ready data (decimals as strings, instants in ISO 8601)."""
    return {
        "generated_at": report.generated_at.isoformat(),
        "period_start": report.period_start.isoformat(),
        "period_months": report.period_months,
        "territory": report.territory,
        "base_currency": report.base_currency,
        "rates_used": {code: str(rate) for code, rate in report.rates_used.items()},
        "months": [m.isoformat() for m in report.months],
        "skipped": [{"record": list(key), "reason": why} for key, why in report.skipped],
        "scorecards": [_card_data(rank, card)
                       for rank, card in enumerate(report.scorecards, start=1)],
    }


def _card_data(rank: int, card: Scorecard) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "rank": rank, "distributor": card.distributor_id, "territory": card.territory,
        "active_registrations": card.active_registrations,
        "active_pipeline": text(card.active_pipeline),
        "registrations": dict(card.outcomes),
        "win_rate_registered": text(card.win_rate_registered),
        "win_rate_unregistered": text(card.win_rate_unregistered),
        "unregistered_won": card.unregistered_won,
        "unregistered_closed": card.unregistered_closed,
        "won_deals": card.won_deals, "won_amount": text(card.won_amount),
        "average_won": text(card.average_won), "peer_average_won": text(card.peer_average_won),
        "versus_peers": text(card.versus_peers),
        "days_to_close_median": card.days_to_close_median,
        "days_to_close_p90": card.days_to_close_p90,
        "conflicts": dict(card.conflicts), "history_months": card.history_months,
        "verdict": card.verdict,
        "verdict_figures": {k: text(v) if isinstance(v, Decimal) else v
                            for k, v in card.verdict_figures.items()},
        "active_by_month": list(card.active_by_month),
    }


def render_json(report: ScorecardReport) -> str:
    return json.dumps(report_data(report), indent=2)


def render(report: ScorecardReport, fmt: str) -> str:
    """The report in ``fmt`` (one of ``FORMATS``)."""
    from rules.report_html import render_html  # the HTML module is larger; load on demand

    renderers: dict[str, Callable[[ScorecardReport], str]] = {
        "table": render_table, "csv": render_csv, "json": render_json, "html": render_html,
    }
    if fmt not in renderers:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderers[fmt](report)
