"""Benchmark: matching and rules over ~1,000,000 accounts and 2,000,000 deals in a SQLite store.

The store is built once (a sandbox scenario of ``--customers`` customers, every deal
copied once, cut at ``--deals``) in a child process and cached under ``--cache``; the
measured process then runs the lean path of :mod:`sync.scale`: the matching columns are
loaded and matched, the links go to a temporary table, and the records stream back in
customer order into the rules, one customer at a time. Prints wall and CPU seconds per
stage and the peak RSS (VmHWM). Target: at most 60 s and 2 GB.

    PYTHONPATH=. python bench/bench_engine_scale.py [--customers 715000] [--deals 2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from rules.engine import Evaluation
from rules.matching import MatchSettings
from rules.model import Policy
from sandbox.scenario import generate
from state.store import Store
from sync.cycle import Runtime
from sync.scale import evaluate_at_scale


class NoWrites:
    """No write-back fields: the benchmark store has an empty ledger."""

    def writes(self, entity: Any) -> Mapping[str, Any]:
        return {}

    def entity(self, entity: Any) -> Any:
        raise NotImplementedError


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def build(path: Path, customers: int, deals: int, seed: int) -> None:
    """Fill the cache (run in a child process: the generator's memory is not measured)."""
    from bench.scale_data import fill_store

    started = time.perf_counter()
    world = generate(seed=seed, customers=customers)
    generated = time.perf_counter()
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()
    accounts, written = fill_store(store, world, deal_copies=1, max_deals=deals)
    store.close()
    meta = {"customers": customers, "accounts": accounts, "deals": written, "seed": seed,
            "now": world.now.isoformat() if world.now else None,
            "crms": [[c.connection, c.vendor, c.role, c.distributor_id] for c in world.crms],
            "generate_s": round(generated - started, 1),
            "fill_s": round(time.perf_counter() - generated, 1)}
    path.with_suffix(".json").write_text(json.dumps(meta))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=715_000)
    parser.add_argument("--deals", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/channelsync-bench-scale"))
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    path = args.cache / f"store-{args.seed}-{args.customers}-{args.deals}.db"
    meta_path = path.with_suffix(".json")
    if args.build_only:
        build(path, args.customers, args.deals, args.seed)
        return 0
    if not meta_path.exists():
        path.unlink(missing_ok=True)
        print(f"building {path} (once) ...", flush=True)
        subprocess.run([sys.executable, __file__, "--customers", str(args.customers),
                        "--deals", str(args.deals), "--seed", str(args.seed),
                        "--cache", str(args.cache), "--build-only"], check=True)
    meta = json.loads(meta_path.read_text())
    print(f"store: {meta['accounts']} accounts, {meta['deals']} deals "
          f"(generated in {meta['generate_s']}s, stored in {meta['fill_s']}s)", flush=True)

    from datetime import datetime

    now = datetime.fromisoformat(meta["now"]) + timedelta(hours=1)
    runtimes = [Runtime(name=c, vendor=v, role=r, distributor_id=d, channel_manager=None,
                        connector=cast(Any, None), mapping=NoWrites())
                for c, v, r, d in meta["crms"]]
    store = Store.from_url(f"sqlite:///{path}")
    marks = [("start", time.perf_counter(), time.process_time())]

    def progress(stage: str) -> None:
        marks.append((stage, time.perf_counter(), time.process_time()))
        print(f"  {stage:<18} wall {marks[-1][1] - marks[-2][1]:6.1f}s  "
              f"cpu {marks[-1][2] - marks[-2][2]:6.1f}s  rss {status_mb('VmRSS'):6.0f}MB  "
              f"peak {status_mb('VmHWM'):6.0f}MB", flush=True)

    kinds: dict[str, int] = {}
    totals = {"desired": 0, "thresholds": 0}

    def consume(evaluation: Evaluation) -> None:
        # a cycle would plan and queue this batch's writes here; the benchmark counts them
        for f in evaluation.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        totals["desired"] += len(evaluation.desired)
        totals["thresholds"] += len(evaluation.next_thresholds)

    run = evaluate_at_scale(store, runtimes, policy=Policy(), settings=MatchSettings(),
                            now=now, progress=progress, consume=consume)
    wall = marks[-1][1] - marks[0][1]
    cpu = marks[-1][2] - marks[0][2]
    print(f"total: wall {wall:.1f}s, cpu {cpu:.1f}s, peak RSS {status_mb('VmHWM'):.0f}MB; "
          f"{run.accounts} accounts -> {run.customers} customers, {run.review_items} review "
          f"items, {totals['desired']} records with desired values, {totals['thresholds']} "
          f"customers with a next threshold, findings {dict(sorted(kinds.items()))}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
