"""Benchmark: matching and rules over ~1,000,000 accounts and 2,000,000 deals in a SQLite store.

The store is built once (a sandbox scenario of ``--customers`` customers, every deal
copied once, cut at ``--deals``) in a child process and cached under ``--cache``, with
every account's matching keys stored as a recording evaluation leaves them; the measured
process then runs the lean path of :mod:`sync.scale`: the stored keys are loaded
(``--keys none``: made from the accounts) and matched, the links go to a temporary
table, and the records stream back in customer order into the rules, one customer at a
time. Prints wall and CPU seconds per stage and the peak RSS (VmHWM). With ``--workers
2`` (the default) a second process evaluates half of the customers; its CPU seconds and
peak RSS are added to the totals (the RSS sum is an upper bound: both peaks need not
coincide). Target: at most 60 s and 2 GB. The store stays cached between runs (delete
the --cache directory to rebuild).

    PYTHONPATH=. python bench/bench_engine_scale.py [--customers 715000] [--deals 2000000]
        [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bench.scale_data import NoWrites, Tally
from rules.features import KEYS_VERSION, made_keys
from rules.matching import MatchSettings
from rules.model import Policy
from rules.scorecards import ScorecardConfig
from sandbox.scenario import generate
from state.store import Store
from sync.cycle import Runtime
from sync.evaluate import evaluate_store
from sync.scale import account_features, evaluate_at_scale


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


def _make_keys(path: Path, connections: list[str]) -> None:
    """Store every account's matching keys, as the product's first recording run does."""
    store = Store.from_url(f"sqlite:///{path}")
    store.migrate()  # a cache built before the keys' table
    store.save_match_keys(made_keys(account_features(store, connections)), KEYS_VERSION)
    store.close()


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name the cached store (shared with the daemon benchmark)."""
    parser.add_argument("--customers", type=int, default=715_000)
    parser.add_argument("--deals", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/channelsync-bench-scale"))


def _cache_path(args: argparse.Namespace) -> Path:
    args.cache.mkdir(parents=True, exist_ok=True)
    return args.cache / f"store-{args.seed}-{args.customers}-{args.deals}-raw.db"


def cached_store(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The cached store's file and description, built (and its matching keys made) first
    if missing, each in a child process: their memory is not the measured one's."""
    path = _cache_path(args)
    meta_path = path.with_suffix(".json")
    common = [sys.executable, str(Path(__file__).resolve()), "--customers", str(args.customers),
              "--deals", str(args.deals), "--seed", str(args.seed), "--cache", str(args.cache)]
    if not meta_path.exists():
        path.unlink(missing_ok=True)
        print(f"building {path} (once) ...", flush=True)
        subprocess.run([*common, "--build-only"], check=True)
    meta = json.loads(meta_path.read_text())
    print(f"store: {meta['accounts']} accounts, {meta['deals']} deals "
          f"(generated in {meta['generate_s']}s, stored in {meta['fill_s']}s)", flush=True)
    if meta.get("keys_version") != KEYS_VERSION:  # once per cache and key version
        started = time.perf_counter()
        subprocess.run([*common, "--make-keys"], check=True)
        meta.update(keys_s=round(time.perf_counter() - started, 1), keys_version=KEYS_VERSION)
        meta_path.write_text(json.dumps(meta))
    print(f"matching keys made and stored in {meta['keys_s']}s (once)", flush=True)
    return path, meta


def runtimes_of(meta: dict[str, Any]) -> list[Runtime]:
    """The store's connections, without connectors and with nothing mapped for writing."""
    return [Runtime(name=c, vendor=v, role=r, distributor_id=d, channel_manager=None,
                    connector=cast(Any, None), mapping=NoWrites())
            for c, v, r, d in meta["crms"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_store_arguments(parser)
    parser.add_argument("--workers", type=int, default=2,
                        help="processes evaluating the rules (1: this one only)")
    parser.add_argument("--product", choices=["dry-run", "record", "record-again"],
                        default=None,
                        help="run the product's full evaluation (sync.evaluate.evaluate_store)"
                        " instead of the engine alone: a dry run; recording into a fresh"
                        " copy of the cached store (the first evaluation); or recording"
                        " again into the copy the last 'record' left (a daily run)")
    parser.add_argument("--keys", choices=["stored", "none"], default="stored",
                        help="stored (default): the accounts' matching keys are in the store,"
                        " as a recording evaluation leaves them (made once into the cache);"
                        " none: a copy without them, as before a store's first evaluation")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--make-keys", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(_cache_path(args), args.customers, args.deals, args.seed)
        return 0
    if args.make_keys:
        path = _cache_path(args)
        meta = json.loads(path.with_suffix(".json").read_text())
        _make_keys(path, [c for c, *_ in meta["crms"]])
        return 0
    path, meta = cached_store(args)
    now = datetime.fromisoformat(meta["now"]) + timedelta(hours=1)
    runtimes = runtimes_of(meta)
    if args.product in ("record", "record-again"):  # the cached store stays as built
        copy = path.with_name("recording.db")
        if args.product == "record" or not copy.exists():
            shutil.copyfile(path, copy)
        path = copy
    if args.keys == "none":
        if args.product not in ("record", "record-again"):  # the cached store keeps its keys
            copy = path.with_name("no-keys.db")
            shutil.copyfile(path, copy)
            path = copy
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM account_match_key")
    store = Store.from_url(f"sqlite:///{path}")
    marks = [("start", time.perf_counter(), time.process_time())]

    def progress(stage: str) -> None:
        marks.append((stage, time.perf_counter(), time.process_time()))
        print(f"  {stage:<18} wall {marks[-1][1] - marks[-2][1]:6.1f}s  "
              f"cpu {marks[-1][2] - marks[-2][2]:6.1f}s  rss {status_mb('VmRSS'):6.0f}MB  "
              f"peak {status_mb('VmHWM'):6.0f}MB", flush=True)

    if args.product:
        return _product(store, runtimes, now, args, marks, progress)
    tally = Tally()
    run = evaluate_at_scale(store, runtimes, policy=Policy(), settings=MatchSettings(),
                            now=now, progress=progress, consume=tally, workers=args.workers)
    for ended in run.consumers[1:]:  # the workers' counts (the first is ours: tally)
        tally.add(ended)
    wall = marks[-1][1] - marks[0][1]
    cpu = marks[-1][2] - marks[0][2] + sum(c for c, _, _ in run.worker_usage)
    peak = status_mb("VmHWM") + sum(p for _, p, _ in run.worker_usage)
    workers = "".join(f"; worker cpu {c:.1f}s, peak RSS {p:.0f}MB, its rules share {w:.1f}s"
                      for c, p, w in run.worker_usage)
    print(f"total: wall {wall:.1f}s, cpu {cpu:.1f}s (all processes), peak RSS {peak:.0f}MB "
          f"(sum of processes){workers}; load average {os.getloadavg()[0]:.1f}")
    print(f"{run.accounts} accounts -> {run.customers} customers, {run.review_items} review "
          f"items, {tally.desired} records with desired values, {tally.thresholds} "
          f"customers with a next threshold, findings {dict(sorted(tally.kinds.items()))}")
    store.close()
    return 0


def _product(store: Store, runtimes: list[Runtime], now: Any, args: argparse.Namespace,
             marks: list[tuple[str, float, float]], progress: Any) -> int:
    since = None
    if args.product == "record-again":  # as the daemon's daily run: nothing changed since
        with store.engine.connect() as conn:
            since = conn.exec_driver_sql("SELECT max(changed_generation) FROM opportunity"
                                         ).scalar()
    outcome = evaluate_store(store, runtimes, policy=Policy(), match_settings=MatchSettings(),
                             now=now, record=args.product != "dry-run", progress=progress,
                             workers=args.workers, scorecards=ScorecardConfig(),
                             refs_since=since)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = marks[-1][1] - marks[0][1]
    cpu = marks[-1][2] - marks[0][2] + children.ru_utime + children.ru_stime
    peak = status_mb("VmHWM") + (children.ru_maxrss / 1024 if args.workers > 1 else 0)
    print(f"total: wall {wall:.1f}s, cpu {cpu:.1f}s (all processes), peak RSS {peak:.0f}MB "
          f"(sum of processes); load average {os.getloadavg()[0]:.1f}")
    print({k: v for k, v in outcome.stats.items()})
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
