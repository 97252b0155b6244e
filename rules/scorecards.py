"""Distributor scorecards: who sells and who only holds registrations (pure, over a snapshot).

Definitions, per distributor, over the period ``[now - period months, now]``:

- A registration belongs to its holder (``rules.registrations.assess``) and to the period
  when ``registered_at`` falls in it (a pending one, by ``created_at``). Outcomes: won,
  lost, expired, released, open (pending, active, expiring, extended).
- Active registrations: those of the period valid at ``now``; pipeline = their amounts.
- Win rate on registered deals = won / (won + lost + expired + released): a registration
  that lapses without a sale is a failure, which is what "paper partners" do. Win rate on
  non-registered deals (created in the period) = won / (won + lost).
- Average won deal size over all the distributor's deals won in the period, against the
  pooled average of the other distributors of its territory (territory of the country of
  its partner account in an internal CRM, or ``distributor_countries``).
- Registration to close: days from ``registered_at`` to ``close_date`` for closed
  registrations; median, and the 90th percentile by nearest rank.
- Conflicts: findings of a conflict kind in the period naming the distributor as a party.
- Paper partner: at least ``min_registrations`` registrations in the period, at least
  ``min_history_months`` since its own first registration (ever, not only in the period),
  and a registered win rate under ``max_win_rate``. Without enough registrations or
  history: ``insufficient_data``.

Amounts convert with ``currency_rates`` (value of one unit in ``base_currency``); a deal
in a currency without a rate is left out of amounts and listed in ``skipped``.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from config.canonical import DIRECT
from rules.model import (
    CONFLICT_KINDS,
    AccountFact,
    Finding,
    OpportunityFact,
    Policy,
    RecordKey,
    Snapshot,
)
from rules.registrations import VALID_STATES, Registration, assess
from rules.scorecard_types import (
    CENT,
    HEALTHY,
    INSUFFICIENT,
    OUTCOMES,
    PAPER_PARTNER,
    RATE,
    PaperPartnerThresholds,
    Scorecard,
    ScorecardConfig,
    ScorecardReport,
    Tally,
    add_months,
    months_between,
)

__all__ = ["OUTCOMES", "PaperPartnerThresholds", "Scorecard", "ScorecardConfig",
           "ScorecardReport", "ScorecardTally", "add_months", "compute_scorecards",
           "months_between", "scorecard_desired", "scorecard_outputs"]

_OUTCOME_OF = {"won": "won", "lost": "lost", "expired": "expired", "released": "released"}


def compute_scorecards(
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    config: ScorecardConfig,
    *,
    findings: Iterable[Finding] = (),
    territory: str | None = None,
) -> ScorecardReport:
    """Scorecards of every distributor with deals in the snapshot (or in ``territory``)."""
    tally = ScorecardTally(policy, now, config)
    tally.add(snapshot.accounts, snapshot.opportunities)
    return tally.report(findings=findings, territory=territory)


class ScorecardTally:
    """The scorecards' sums, fed a part of the records at a time (a streamed evaluation
    never holds every deal); :meth:`report` finishes them. Partner accounts (internal,
    with a ``partner_id``) are kept: they are few, and the headline figures go on them."""

    def __init__(self, policy: Policy, now: datetime, config: ScorecardConfig) -> None:
        self.policy, self.now, self.config = policy, now, config
        self.start = add_months(now, -config.period_months)
        self.months = (*(add_months(self.start, n) for n in range(1, config.period_months)),
                       now)
        self.tallies: dict[str, Tally] = {}
        self.skipped: list[tuple[RecordKey, str]] = []
        self.rates_used: dict[str, Decimal] = {}
        self.partners: list[AccountFact] = []

    def add(self, accounts: Iterable[AccountFact], opportunities: Iterable[OpportunityFact],
            assessed: Mapping[RecordKey, Registration] | None = None) -> None:
        """Count ``opportunities`` (and keep the partner accounts of ``accounts``).
        ``assessed``: their registrations as the rules already assessed them at this
        ``now`` (:attr:`rules.engine.Evaluation.registrations`), not assessed again."""
        self.partners.extend(a for a in accounts
                             if a.partner_id and a.role == "internal" and not a.deleted)
        policy, now, start, months = self.policy, self.now, self.start, self.months
        tallies, skipped, rates_used = self.tallies, self.skipped, self.rates_used
        rates, base = self.config.currency_rates, self.config.base_currency
        for opp in opportunities:
            if opp.deleted or opp.party == DIRECT:
                continue
            amount = _converted(opp, rates, base, rates_used, skipped)
            if opp.registered_by:
                _count_registration(opp, amount, policy, now, start, months, tallies,
                                    assessed)
                continue
            created = opp.created_at
            if created is None or not start <= created <= now:
                continue
            tally = tallies.get(opp.party) or tallies.setdefault(opp.party, _new_tally(months))
            stage = opp.stage_category
            if stage != "open":
                tally.unregistered_closed += 1
                if stage == "won":
                    tally.unregistered_won += 1
                    _add_won(tally, amount)

    def merge(self, other: ScorecardTally) -> None:
        """Add the sums of a tally over other records (another process's share)."""
        for party, theirs in other.tallies.items():
            mine = self.tallies.get(party)
            if mine is None:
                self.tallies[party] = theirs
                continue
            for outcome, n in theirs.outcomes.items():
                mine.outcomes[outcome] += n
            mine.active += theirs.active
            mine.pipeline += theirs.pipeline
            mine.unregistered_closed += theirs.unregistered_closed
            mine.unregistered_won += theirs.unregistered_won
            mine.won += theirs.won
            mine.won_amount += theirs.won_amount
            mine.days.extend(theirs.days)
            if theirs.first_registered is not None and (
                    mine.first_registered is None
                    or theirs.first_registered < mine.first_registered):
                mine.first_registered = theirs.first_registered
            mine.active_delta = [a + b for a, b in zip(mine.active_delta, theirs.active_delta,
                                                       strict=True)]
        self.skipped.extend(other.skipped)
        self.rates_used.update(other.rates_used)
        self.partners.extend(other.partners)

    def report(self, *, findings: Iterable[Finding] = (),
               territory: str | None = None) -> ScorecardReport:
        conflicts = _conflicts_by_party(findings, self.start, self.now)
        countries = _partner_countries(self.partners, self.config)
        scorecards = _finish(self.tallies, conflicts, countries, self.config, self.now,
                             territory)
        return ScorecardReport(
            generated_at=self.now, period_start=self.start,
            period_months=self.config.period_months, base_currency=self.config.base_currency,
            rates_used=dict(sorted(self.rates_used.items())), scorecards=scorecards,
            months=self.months, skipped=tuple(self.skipped), territory=territory,
        )


def _new_tally(months: tuple[datetime, ...]) -> Tally:
    return Tally(active_delta=[0] * (len(months) + 1))


def _converted(
    opp: OpportunityFact, rates: Mapping[str, Decimal], base: str,
    rates_used: dict[str, Decimal], skipped: list[tuple[RecordKey, str]],
) -> Decimal | None:
    if opp.amount is None:
        return None
    currency = opp.currency or base
    if currency == base:
        rates_used[currency] = Decimal(1)
        return opp.amount
    rate = rates.get(currency)
    if rate is None:
        skipped.append((opp.key, f"no exchange rate for {currency} in config"))
        return None
    rates_used[currency] = rate
    return opp.amount * rate


def _add_won(tally: Tally, amount: Decimal | None) -> None:
    if amount is not None:
        tally.won += 1
        tally.won_amount += amount


def _count_registration(
    opp: OpportunityFact, amount: Decimal | None, policy: Policy, now: datetime,
    start: datetime, months: tuple[datetime, ...], tallies: dict[str, Tally],
    assessed: Mapping[RecordKey, Registration] | None,
) -> None:
    registered_at = opp.registered_at
    if registered_at is not None:
        # history counts from the distributor's own first registration, in or before the period
        who = opp.registered_by or ""
        tally = tallies.get(who) or tallies.setdefault(who, _new_tally(months))
        if tally.first_registered is None or registered_at < tally.first_registered:
            tally.first_registered = registered_at
    since = registered_at or opp.created_at
    if since is None or not start <= since <= now:
        return
    reg = assess(opp, policy, now) if assessed is None else assessed.get(opp.key)
    if reg is None:
        return
    tally = tallies.get(reg.holder) or tallies.setdefault(reg.holder, _new_tally(months))
    state = reg.state
    tally.outcomes[_OUTCOME_OF.get(state, "open")] += 1
    if state == "won":
        _add_won(tally, amount)
    if reg.registered_at is None:
        return
    if state in VALID_STATES:
        tally.active += 1
        if amount is not None:
            tally.pipeline += amount
    ended = reg.expires_at
    if state in ("won", "lost") and opp.close_date is not None:
        tally.days.append((opp.close_date - reg.registered_at.date()).days)
        closed = datetime.combine(opp.close_date, time.min, tzinfo=UTC)
        ended = closed if ended is None else min(ended, closed)
    # active at month instant m when registered_at <= m < ended: a difference array
    tally.active_delta[bisect_left(months, reg.registered_at)] += 1
    if ended is not None:
        tally.active_delta[bisect_left(months, ended)] -= 1


def _conflicts_by_party(
    findings: Iterable[Finding], start: datetime, now: datetime
) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for finding in findings:
        if finding.kind not in CONFLICT_KINDS or not start <= finding.at <= now:
            continue
        for party in finding.details.get("parties", ()):
            per_kind = counts.setdefault(party, {})
            per_kind[finding.kind] = per_kind.get(finding.kind, 0) + 1
    return counts


def _partner_countries(accounts: Iterable[AccountFact], config: ScorecardConfig
                       ) -> dict[str, str | None]:
    countries: dict[str, str | None] = {}
    for account in accounts:
        if account.partner_id and account.role == "internal" and not account.deleted:
            countries.setdefault(account.partner_id, account.country)
    countries.update(config.distributor_countries)
    return countries


def _ratio(numerator: int, denominator: int) -> Decimal | None:
    return (Decimal(numerator) / denominator).quantize(RATE) if denominator else None


def _finish(
    tallies: Mapping[str, Tally], conflicts: Mapping[str, Mapping[str, int]],
    countries: Mapping[str, str | None], config: ScorecardConfig, now: datetime,
    territory: str | None,
) -> tuple[Scorecard, ...]:
    territory_of = {d: config.territory_of(countries.get(d)) for d in tallies}
    totals: dict[str | None, tuple[int, Decimal]] = {}
    for distributor, tally in tallies.items():
        won, amount = totals.get(territory_of[distributor], (0, Decimal(0)))
        totals[territory_of[distributor]] = (won + tally.won, amount + tally.won_amount)
    cards = []
    for distributor, tally in tallies.items():
        home = territory_of[distributor]
        if territory is not None and home != territory:
            continue
        cards.append(_card(distributor, tally, home, totals, conflicts, config, now))
    cards.sort(key=lambda c: (-c.won_amount, -(c.win_rate_registered or 0), c.distributor_id))
    return tuple(cards)


def _card(
    distributor: str, tally: Tally, home: str | None,
    totals: Mapping[str | None, tuple[int, Decimal]],
    conflicts: Mapping[str, Mapping[str, int]], config: ScorecardConfig, now: datetime,
) -> Scorecard:
    outcomes = tally.outcomes
    decided = outcomes["won"] + outcomes["lost"] + outcomes["expired"] + outcomes["released"]
    win_rate = _ratio(outcomes["won"], decided)
    average = (tally.won_amount / tally.won).quantize(CENT) if tally.won else None
    peer_average = None
    if home is not None:
        all_won, all_amount = totals[home]
        peer_won, peer_amount = all_won - tally.won, all_amount - tally.won_amount
        peer_average = (peer_amount / peer_won).quantize(CENT) if peer_won else None
    versus = (average / peer_average).quantize(RATE) if average and peer_average else None
    days = tuple(sorted(tally.days))
    history = months_between(tally.first_registered, now) if tally.first_registered else 0
    registrations = sum(outcomes.values())
    thresholds = config.paper_partner
    enough = (registrations >= thresholds.min_registrations
              and history >= thresholds.min_history_months)
    if not enough or win_rate is None:
        verdict = INSUFFICIENT
    else:
        verdict = PAPER_PARTNER if win_rate < thresholds.max_win_rate else HEALTHY
    active_series, running = [], 0
    for delta in tally.active_delta[:-1]:
        running += delta
        active_series.append(running)
    return Scorecard(
        distributor_id=distributor, territory=home, active_registrations=tally.active,
        active_pipeline=tally.pipeline.quantize(CENT), outcomes=dict(outcomes),
        win_rate_registered=win_rate,
        win_rate_unregistered=_ratio(tally.unregistered_won, tally.unregistered_closed),
        unregistered_won=tally.unregistered_won, unregistered_closed=tally.unregistered_closed,
        won_deals=tally.won, won_amount=tally.won_amount.quantize(CENT), average_won=average,
        peer_average_won=peer_average, versus_peers=versus, days_to_close=days,
        days_to_close_median=float(statistics.median(days)) if days else None,
        days_to_close_p90=days[math.ceil(0.9 * len(days)) - 1] if days else None,
        conflicts=dict(sorted(conflicts.get(distributor, {}).items())),
        history_months=history, verdict=verdict,
        verdict_figures={
            "registrations": registrations, "min_registrations": thresholds.min_registrations,
            "win_rate_registered": win_rate, "max_win_rate": thresholds.max_win_rate,
            "history_months": history, "min_history_months": thresholds.min_history_months,
        },
        active_by_month=tuple(active_series),
    )


def scorecard_outputs(report: ScorecardReport) -> dict[str, dict[str, Any]]:
    """Headline figures per distributor, keyed by the account outputs they write to."""
    return {
        card.distributor_id: {
            "scorecard_win_rate_registered": card.win_rate_registered,
            "scorecard_active_registrations": card.active_registrations,
            "scorecard_verdict": card.verdict,
        }
        for card in report.scorecards
    }


def scorecard_desired(
    accounts: Iterable[AccountFact], report: ScorecardReport
) -> dict[RecordKey, Mapping[str, Any]]:
    """Desired values for each distributor's partner account in internal CRMs only."""
    headline = scorecard_outputs(report)
    return {
        account.key: headline[account.partner_id]
        for account in accounts
        if account.role == "internal" and not account.deleted
        and account.partner_id in headline
    }
