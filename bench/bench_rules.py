"""Benchmark: the channel rules over 1,000,000 accounts and 2,000,000 opportunities in memory.

Records are already matched into customers (two accounts each: the manufacturer's and
one distributor's; four deals each: direct and distributor, about half registered, with
conflicts, expiries and decisions sprinkled in). Prints wall time and peak RSS.

    PYTHONPATH=. python bench/bench_rules.py [--accounts 1000000] [--opportunities 2000000]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules.engine import (
    customers_crossing,
    due_customers,
    evaluate,
    evaluate_groups,
    next_threshold,
)
from rules.model import AccountFact, OpportunityFact, Policy, RecordKey, Snapshot

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
INTERNAL = ("sf-main", "dyn-emea")
DISTRIBUTORS = tuple(f"D{n:02d}" for n in range(50))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Group = tuple[str, list[AccountFact], list[OpportunityFact]]


def generate(accounts: int, opportunities: int, seed: int = 7) -> tuple[Snapshot, list[Group]]:
    rng = random.Random(seed)
    customers = accounts // 2
    per_customer = max(1, opportunities // customers)
    amounts = [Decimal(1000 * n) for n in range(1, 200)]
    # shared instants, as a real store hands back many equal timestamps
    instants = [NOW - timedelta(days=d, hours=h) for d in range(0, 400) for h in (0, 9)]
    groups: list[Group] = []
    for c in range(customers):
        cid = f"cust-{c:07d}"
        account_facts: list[AccountFact] = []
        opp_facts: list[OpportunityFact] = []
        groups.append((cid, account_facts, opp_facts))
        internal = INTERNAL[c % 2]
        first = DISTRIBUTORS[rng.randrange(50)]
        second = DISTRIBUTORS[rng.randrange(50)]
        internal_account = RecordKey(internal, "account", f"a{c}")
        partner_account = RecordKey(first, "account", f"a{c}")
        explicit = first if c % 50 == 0 else None
        account_facts.append(AccountFact(internal_account, cid, "internal", None,
                                         channel_owner=explicit, country="DE"))
        account_facts.append(AccountFact(partner_account, cid, "distributor", first))
        for n in range(per_customer):
            kind = n % 4
            registered = kind in (2, 3) and rng.random() < 0.5
            party = "direct" if kind < 2 else (first if kind == 2 else second)
            connection = internal if party == "direct" else party
            decision = "extend" if registered and rng.random() < 0.01 else None
            opp_facts.append(OpportunityFact(
                key=RecordKey(connection, "opportunity", f"o{c}-{n}"),
                customer_id=cid,
                role="internal" if party == "direct" else "distributor",
                distributor_id=None if party == "direct" else party,
                account_key=internal_account if party == "direct" else partner_account,
                party=party,
                amount=amounts[rng.randrange(len(amounts))],
                currency="EUR",
                stage_category=("open", "open", "won", "lost")[rng.randrange(4)],
                created_at=instants[rng.randrange(len(instants))],
                modified_at=NOW - timedelta(days=1),
                last_activity_at=instants[rng.randrange(200)],
                registered_by=party if registered else None,
                registered_at=instants[rng.randrange(400)] if registered else None,
                registration_decision=decision,
            ))
    snapshot = Snapshot(
        [a for _, accounts_of, _ in groups for a in accounts_of],
        [o for _, _, opps_of in groups for o in opps_of],
    )
    return snapshot, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--opportunities", type=int, default=2_000_000)
    args = parser.parse_args()
    policy = Policy(channel_managers={name: f"cm-{name}" for name in INTERNAL})

    started = time.perf_counter()
    snapshot, groups = generate(args.accounts, args.opportunities)
    gc.collect()
    input_rss = peak_rss_mb()
    print(f"generated {len(snapshot.accounts):,} accounts, {len(snapshot.opportunities):,} "
          f"opportunities in {time.perf_counter() - started:.1f} s; RSS {input_rss:,.0f} MB")

    gc.freeze()  # the facts live for the whole run; keep the collector off them
    started, cpu_started = time.perf_counter(), time.process_time()
    result = evaluate_groups(groups, policy, NOW)
    full, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    kinds: dict[str, int] = {}
    for finding in result.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    # CPU time as well: on a shared machine wall time mostly measures the neighbours
    print(f"full evaluation: {full:.1f} s wall, {cpu:.1f} s CPU, "
          f"{len(result.findings):,} findings, {len(result.desired):,} records with desired "
          f"values, "
          f"{len(result.owners):,} customers; peak RSS {peak_rss_mb():,.0f} MB "
          f"(+{peak_rss_mb() - input_rss:,.0f} MB over the input)")
    print("findings by kind:", dict(sorted(kinds.items())))
    del result
    gc.collect()
    started = time.perf_counter()
    result = evaluate(snapshot, policy, NOW)
    print(f"full evaluation from a flat snapshot (grouping included): "
          f"{time.perf_counter() - started:.1f} s; peak RSS {peak_rss_mb():,.0f} MB")

    started = time.perf_counter()
    due = due_customers(result.next_thresholds, NOW + timedelta(hours=1))
    print(f"due customers from the kept next thresholds ({len(result.next_thresholds):,} "
          f"customers): {time.perf_counter() - started:.2f} s, {len(due):,} due within the "
          f"next hour")
    started = time.perf_counter()
    crossing = customers_crossing(snapshot, policy, NOW - timedelta(minutes=5), NOW)
    print(f"full threshold scan (customers_crossing): {time.perf_counter() - started:.1f} s, "
          f"{len(crossing):,} customers crossed in the last 5 minutes")
    started = time.perf_counter()
    upcoming = next_threshold(snapshot, policy, NOW)
    print(f"next_threshold scan: {time.perf_counter() - started:.1f} s -> {upcoming}")

    changed = {f"cust-{c:07d}" for c in range(0, len(result.owners), 100)}  # 1% of customers
    started = time.perf_counter()
    partial = evaluate(snapshot, policy, NOW, only_customers=changed)
    print(f"incremental evaluation of {len(partial.owners):,} customers (1%) from the flat "
          f"snapshot: {time.perf_counter() - started:.2f} s (includes the O(n) grouping scan)")
    subset = [g for g in groups if g[0] in changed]
    started = time.perf_counter()
    evaluate_groups(subset, policy, NOW)
    print(f"incremental evaluation of the same customers, loaded grouped: "
          f"{time.perf_counter() - started:.2f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
