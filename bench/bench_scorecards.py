"""Benchmark: distributor scorecards over 1,000,000 opportunities (target: at most 10 s).

200 distributors in 4 territories, deals in 4 currencies, 60% registered, 50,000 conflict
findings. Times the computation and each rendering; prints the figures.

    PYTHONPATH=. python bench/bench_scorecards.py [--opportunities 1000000]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules.model import AccountFact, Finding, OpportunityFact, Policy, RecordKey, Snapshot
from rules.report import render
from rules.scorecards import ScorecardConfig, compute_scorecards

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
COUNTRIES = ("DE", "AT", "FR", "SE", "US", "GB", "IT", "ES")
CONFIG = ScorecardConfig(
    territories={"DACH": ("DE", "AT"), "WEST": ("FR", "GB", "ES", "IT"), "NORDICS": ("SE",),
                 "AMERICAS": ("US",)},
    currency_rates={"USD": Decimal("0.92"), "GBP": Decimal("1.17"), "SEK": Decimal("0.088")},
)


def generate(count: int, seed: int = 11) -> tuple[Snapshot, list[Finding]]:
    rng = random.Random(seed)
    distributors = [f"D{n:03d}" for n in range(200)]
    accounts = [
        AccountFact(RecordKey("sf-main", "account", f"p-{d}"), None, "internal", None,
                    country=COUNTRIES[n % len(COUNTRIES)], partner_id=d)
        for n, d in enumerate(distributors)
    ]
    instants = [NOW - timedelta(days=d, hours=h) for d in range(800) for h in (0, 13)]
    amounts = [Decimal(250 * n) for n in range(1, 400)]
    currencies = ("EUR", "EUR", "USD", "GBP", "SEK")
    stages = ("open", "won", "lost", "lost")
    opportunities = []
    for n in range(count):
        party = distributors[rng.randrange(200)]
        registered = rng.random() < 0.6
        created = instants[rng.randrange(len(instants))]
        stage = stages[rng.randrange(4)]
        opportunities.append(OpportunityFact(
            key=RecordKey(party, "opportunity", f"o{n}"), customer_id=f"c{n // 4}",
            role="distributor", distributor_id=party, account_key=None, party=party,
            amount=amounts[rng.randrange(len(amounts))],
            currency=currencies[rng.randrange(len(currencies))], stage_category=stage,  # type: ignore[arg-type]  # drawn from the literal's values
            close_date=(created + timedelta(days=rng.randrange(10, 200))).date()
            if stage != "open" else None,
            created_at=created, last_activity_at=created,
            registered_by=party if registered else None,
            registered_at=created if registered else None,
        ))
    findings = [
        Finding("channel_vs_channel", f"c{n}", RecordKey("x", "opportunity", str(n)),
                "conflict.channel_vs_channel", (),
                {"parties": (distributors[n % 200], distributors[(n * 7) % 200])},
                NOW - timedelta(days=n % 500))
        for n in range(50_000)
    ]
    return Snapshot(accounts, opportunities), findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=1_000_000)
    args = parser.parse_args()
    snapshot, findings = generate(args.opportunities)
    policy = Policy()

    started, cpu_started = time.perf_counter(), time.process_time()
    report = compute_scorecards(snapshot, policy, NOW, CONFIG, findings=findings)
    computed = time.perf_counter() - started
    timings = {}
    for fmt in ("table", "csv", "json", "html"):
        begun = time.perf_counter()
        size = len(render(report, fmt))
        timings[fmt] = (time.perf_counter() - begun, size)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"scorecards over {len(snapshot.opportunities):,} opportunities: "
          f"{len(report.scorecards)} distributors, computed in {computed:.2f} s")
    for fmt, (seconds, size) in timings.items():
        print(f"  render {fmt:5}: {seconds:.3f} s, {size:,} characters")
    print(f"total {total:.2f} s wall, {cpu:.2f} s CPU (target <= 10 s); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    paper = [c.distributor_id for c in report.scorecards if c.verdict == "paper_partner"]
    print(f"paper partners: {len(paper)}; rates used: {dict(report.rates_used)}")


if __name__ == "__main__":
    main()
