"""Matching quality and speed: precision/recall on the default scenario; ``--big`` for 1M accounts.

Run: ``python -m bench.bench_matching [--big] [--customers N] [--seed N]``.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from rules.match_quality import score_against_truth
from rules.matching import AccountRecord, Link, match_accounts
from sandbox.scenario import generate
from sandbox.world import World

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def records_from_world(world: World) -> list[AccountRecord]:
    return [
        AccountRecord(connection=crm.connection, external_id=a.key, name=a.name,
                      domain=a.website, country=a.country, duns=a.duns, vat_id=a.vat_id)
        for crm in world.crms for a in crm.accounts
    ]


def run(seed: int, customers: int, *, show_errors: int) -> None:
    started = time.perf_counter()
    world = generate(seed=seed, customers=customers, now=NOW)
    records = records_from_world(world)
    generated = time.perf_counter()
    result = match_accounts(records)
    matched = time.perf_counter()
    precision, recall = score_against_truth(result.links, world.truth.customer_of)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"seed={seed} customers={customers} accounts={len(records)} "
          f"clusters={len({link.customer_id for link in result.links.values()})} "
          f"truth_customers={len(set(world.truth.customer_of.values()))}")
    print(f"precision={precision:.4f} recall={recall:.4f} review_items={len(result.review)} "
          f"skipped_blocks={len(result.skipped_blocks)}")
    print(f"generate={generated - started:.1f}s match={matched - generated:.1f}s "
          f"peak_rss={peak_mb:.0f}MB")
    if show_errors:
        _show_errors(world, records, result.links, show_errors)


def _show_errors(world: World, records: list[AccountRecord], links: Mapping[tuple[str, str], Link],
                 limit: int) -> None:
    by_key = {r.key: r for r in records}
    truth = world.truth.customer_of
    by_customer: dict[str, list[tuple[str, str]]] = {}
    for key, cid in truth.items():
        by_customer.setdefault(cid, []).append(key)
    shown = 0
    for cid, keys in by_customer.items():
        found = {links[k].customer_id for k in keys}
        if len(found) > 1 and shown < limit:
            shown += 1
            print("MISSED", cid, [(by_key[k].name, by_key[k].domain, by_key[k].country,
                                   links[k].method) for k in keys])
    clusters: dict[str, list[tuple[str, str]]] = {}
    for key, link in links.items():
        clusters.setdefault(link.customer_id, []).append(key)
    shown = 0
    for keys in clusters.values():
        if len({truth[k] for k in keys}) > 1 and shown < limit:
            shown += 1
            print("WRONG", [(truth[k], by_key[k].name, by_key[k].domain, by_key[k].country,
                             links[k].method) for k in keys])


def dump(seed: int, customers: int, path: Path) -> None:
    """Generate in this (throw-away) process so the World's memory is not measured."""
    world = generate(seed=seed, customers=customers, now=NOW)
    rows = [(r.connection, r.external_id, r.name, r.domain, r.country, r.duns, r.vat_id)
            for r in records_from_world(world)]
    with path.open("wb") as out:
        pickle.dump((rows, world.truth.customer_of), out, protocol=pickle.HIGHEST_PROTOCOL)


def run_big(seed: int, customers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "accounts.pickle"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench.bench_matching", "--seed", str(seed),
                        "--customers", str(customers), "--dump", str(path)], check=True)
        print(f"generated in a child process: {time.perf_counter() - started:.0f}s")
        with path.open("rb") as source:
            rows, truth = pickle.load(source)
    records = [AccountRecord(*row) for row in rows]
    del rows
    gc.collect()
    before_mb = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = match_accounts(records)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    precision, recall = score_against_truth(result.links, truth)
    print(f"big: accounts={len(records)} match_wall={wall:.1f}s match_cpu={cpu:.1f}s "
          f"rss_before_match={before_mb:.0f}MB peak_rss={peak_mb:.0f}MB "
          f"(input records and truth included)")
    print(f"big: precision={precision:.4f} recall={recall:.4f} review_items={len(result.review)} "
          f"skipped_blocks={len(result.skipped_blocks)}")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--big", action="store_true", help="also match about 1,000,000 accounts")
    parser.add_argument("--big-customers", type=int, default=715_000,
                        help="customers of the big run (715,000 give about 1,000,000 accounts)")
    parser.add_argument("--errors", type=int, default=0, help="show this many misses/false merges")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump(args.seed, args.customers, args.dump)
        return
    run(args.seed, args.customers, show_errors=args.errors)
    if args.big:
        run_big(args.seed, args.big_customers)


if __name__ == "__main__":
    main()
