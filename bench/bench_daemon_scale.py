"""Benchmark: the daemon's evaluations over ~1,000,000 accounts and 2,000,000 deals.

The store is :mod:`bench.bench_engine_scale`'s cached one, copied. One process runs
:func:`sync.incremental.evaluate_incremental` as the daemon does, with one engine kept
across cycles:

1. the first cycle: the store was never evaluated, so everything is (recorded);
2. the second, nothing changed: the match index is built (from the stored keys), as in
   any new daemon process, and nothing else is evaluated;
3. ``--change`` of the accounts (names, so they are matched again) and of the deals
   (amounts) change, written page by page as a pull writes them;
4. the third cycle evaluates what changed.

Only the evaluation is measured (no CRMs: the connections have no connector and map no
field for writing, so nothing is planned). Per cycle: wall and CPU seconds, the process's
RSS after it and its peak (VmHWM, which includes the first cycle's). The 1% figure of the
issue is measured against the sandboxes by ``bench_cycle.py``; this shows what a 1% cycle
costs at a million accounts, and what the daemon holds in memory between cycles.

    PYTHONPATH=. python bench/bench_daemon_scale.py [--change 0.01]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import shutil
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.bench_engine_scale import add_store_arguments, cached_store, runtimes_of, status_mb
from rules.matching import MatchSettings
from rules.model import Policy
from rules.scorecards import ScorecardConfig
from state.store import Store
from sync.cycle import Runtime
from sync.incremental import Engine, evaluate_incremental

PAGE = 500
_BOOKKEEPING = {"connection", "deleted", "deleted_at", "changed_generation", "updated_at"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_store_arguments(parser)
    parser.add_argument("--change", type=float, default=0.01,
                        help="share of the accounts and of the deals changed before cycle 3")
    parser.add_argument("--profile", action="store_true",
                        help="profile cycle 3 (cProfile) and print its costliest calls")
    parser.add_argument("--reuse", action="store_true",
                        help="start from the store cycle 1 left last time (kept as"
                        " recorded.db; made by this run if missing): cycle 1 is not run")
    args = parser.parse_args()
    path, meta = cached_store(args)
    copy, recorded = path.with_name("daemon.db"), path.with_name("recorded.db")
    shutil.copyfile(recorded if args.reuse and recorded.exists() else path, copy)
    store = Store.from_url(f"sqlite:///{copy}")
    runtimes = runtimes_of(meta)
    now = datetime.fromisoformat(meta["now"]) + timedelta(hours=1)
    engine = Engine()
    first = None
    if not (args.reuse and recorded.exists()):
        first = cycle(store, runtimes, engine, now, "1: first, everything")
        store.close()
        with sqlite3.connect(copy) as conn:  # the write-ahead log into the file, emptied
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(copy, recorded)
        store = Store.from_url(f"sqlite:///{copy}")
    cycle(store, runtimes, engine, now + timedelta(minutes=5), "2: no change, index built")
    changed = change(store, args.change)
    third = cycle(store, runtimes, engine, now + timedelta(minutes=10),
                  f"3: {args.change:.0%} changed ({changed:,} records)",
                  profile=args.cache / "daemon-cycle3.prof" if args.profile else None)
    if first is not None:
        print(f"cycle 3 against cycle 1: wall {third[0] / first[0]:.1%}, "
              f"cpu {third[1] / first[1]:.1%}")
    store.close()
    return 0


def cycle(store: Store, runtimes: list[Runtime], engine: Engine, now: datetime,
          label: str, *, profile: Path | None = None) -> tuple[float, float]:
    """One evaluation, timed; with ``profile``, profiled and its statistics kept there."""
    run_id = store.start_run(trigger="bench")
    collections = _CollectorClock()
    gc.callbacks.append(collections)
    profiler = cProfile.Profile() if profile is not None else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    outcome = evaluate_incremental(store, runtimes, policy=Policy(),
                                   match_settings=MatchSettings(), now=now, run_id=run_id,
                                   scorecards=ScorecardConfig(), engine=engine)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.callbacks.remove(collections)
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        print(f"profile kept in {profile}")
    store.finish_run(run_id, status="ok", counts={}, error=None)
    stats = {k: v for k, v in outcome.stats.items()
             if k in ("evaluation", "changed_records", "rematched_accounts", "customers",
                      "accounts", "opportunities", "review_items", "findings_opened",
                      "findings_resolved")}
    print(f"cycle {label}: wall {wall:.2f}s, cpu {cpu:.2f}s (this process), "
          f"rss {status_mb('VmRSS'):.0f}MB, peak {status_mb('VmHWM'):.0f}MB; garbage"
          f" collections {collections}\n  {stats}",
          flush=True)
    return wall, cpu


class _CollectorClock:
    """Counts and times the garbage collector's runs per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def __str__(self) -> str:
        return ", ".join(f"gen{g} {n} ({s:.2f}s)"
                         for g, (n, s) in enumerate(zip(self.runs, self.seconds, strict=True)))


def change(store: Store, share: float) -> int:
    """Edit every n-th account's name and deal's amount, written a page at a time through
    the store's page write, as a pull stores what it read."""
    step = max(1, round(1 / share))
    run_id = store.start_run(trigger="bench-edits")
    started = time.perf_counter()
    written = 0
    with store.engine.connect() as conn:
        picked = {entity: conn.exec_driver_sql(
            f"SELECT connection, external_id FROM {entity} WHERE NOT deleted "
            f"AND rowid % {step} = 0").all() for entity in ("account", "opportunity")}
    for entity, keys in picked.items():
        read = store.accounts_by_keys if entity == "account" else store.opportunities_by_keys
        rows = read([(c, x) for c, x in keys])
        raw = store.current_values_of((r.connection, entity, r.external_id) for r in rows)
        pages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            values = {k: v for k, v in asdict(row).items() if k not in _BOOKKEEPING}
            if entity == "account":
                values["name"] = f"{values['name'] or ''} Group"
            else:
                values["amount"] = (values["amount"] or Decimal(0)) + 1
            values["raw"] = raw[(row.connection, entity, row.external_id)][1]
            pages[row.connection].append(values)
        for connection, page_rows in pages.items():
            for start in range(0, len(page_rows), PAGE):
                store.apply_page(connection=connection, entity=entity,
                                 rows=page_rows[start:start + PAGE], deleted_ids=(),
                                 skipped=(), cursor={"bench": run_id}, run_id=run_id,
                                 full_refresh=False)
                written += len(page_rows[start:start + PAGE])
    store.finish_run(run_id, status="ok", counts={"changed": written}, error=None)
    print(f"changed {written:,} records in {time.perf_counter() - started:.1f}s", flush=True)
    return written


if __name__ == "__main__":
    sys.exit(main())
