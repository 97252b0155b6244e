"""Benchmark: whole cycles over the default scenario against the sandboxes.

Five cycles in one process (as the daemon runs them): the first (full evaluation), the
second (reads back our own writes), the third with no change (repeated, up to three times,
while it still writes what a vendor's limit held back in the first), a cycle after people
edited ``--change`` of the records (1% by default: deal amounts and account names, through
each sandbox's Python API), and a last one with no change but a full evaluation forced
(what every cycle would cost without incremental evaluation). Per cycle: wall and CPU
seconds per stage (pull per connection, match, rules, plan, push per connection), API
calls per CRM, writes.
CPU time is the whole process's, so it includes the in-process sandboxes serving the
requests; "own CPU" is the cycle's thread alone (the product without the CRMs' side, which
the sandboxes serve from other threads). The target: the 1% cycle costs at most 5% of the
full one.

    PYTHONPATH=. python bench/bench_cycle.py [--customers 400] [--change 0.01] [--once]
        [--interval SECONDS] [--index-lag SECONDS] [--slow MS] [--profile] [--sample]

Cycles start ``--interval`` apart, as the daemon starts them (default: the daemon's default
``schedule.cycle_interval``, 5 minutes, not the demo configuration's 1 minute; 0 runs them
back to back); the people's edits are
made right after cycle 3, so they land during the wait. The waiting is not counted in any
figure. HubSpot's search index lags writes by seconds: the HubSpot sandboxes emulate
``--index-lag`` (default 5 s), and the connector keeps its own allowance (2 minutes).
``--once`` drops the in-memory match index before the 1% cycle (a fresh ``sync --once``
process rebuilds it). ``--profile`` profiles cycles 3 and 4 (cProfile, the cycle's thread);
``--sample`` samples every thread's CPU and stack in them (the whole process, sandboxes
included). Every cycle prints what the machine waited on meanwhile (steal, iowait, and
the CPU and I/O stall totals of /proc/pressure), and cycles 3 and 4 the store calls that
took ``--slow`` milliseconds or more (default 20): a cycle's wall time without CPU is
told apart from the machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sync.batches
import sync.incremental
import sync.scale
from bench.probes import SlowStatements, ThreadSampler, machine_counters, quiet_logging
from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from config.models import ScheduleSettings
from sandbox.edits import edit_record
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sync.incremental import STATE, engine_for
from wiring import Wiring


class Clock:
    """Wall and CPU seconds per stage of the current cycle."""

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = {}
        self.mark = (time.perf_counter(), time.process_time())

    def add(self, stage: str, wall: float, cpu: float) -> None:
        entry = self.stages.setdefault(stage, [0.0, 0.0])
        entry[0] += wall
        entry[1] += cpu

    def progress(self, step: str, connection: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        name = f"{step} {connection}".strip()
        self.add(name, wall - self.mark[0], cpu - self.mark[1])
        self.mark = (wall, cpu)

    def wrap(self, module: Any, name: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - wall, time.process_time() - cpu)

        setattr(module, name, timed)


def api_calls(sandboxes: SandboxSet) -> dict[str, int]:
    return {sb.connection: sum(sb.app.requests.snapshot().values()) for sb in sandboxes}


def edit_share(wiring: Wiring, sandboxes: SandboxSet, share: float, rng: random.Random) -> int:
    store = wiring.store()
    accounts = store.load_accounts()
    deals = store.load_opportunities()
    count = 0
    for a in rng.sample(accounts, max(1, round(len(accounts) * share))):
        edit_record(sandboxes[a.connection], "account", a.external_id,
                    name=f"{a.name or a.external_id} {rng.choice('QXZ')}")
        count += 1
    for o in rng.sample(deals, max(1, round(len(deals) * share))):
        edit_record(sandboxes[o.connection], "opportunity", o.external_id,
                    amount=Decimal(rng.randrange(1000, 90000)))
        count += 1
    return count


DEFAULT_INTERVAL_S = ScheduleSettings().cycle_interval.total_seconds()
SETTLE_MAX = 3  # no-change cycles before the edits, until one writes nothing


class Spacing:
    """Starts cycles ``interval`` seconds apart, as the daemon's scheduler does."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self.last is not None and self.interval > 0:
            left = self.last + self.interval - now
            if left > 0:
                print(f"   (waiting {left:.0f}s for the next cycle: not counted)", flush=True)
                time.sleep(left)
        self.last = time.monotonic()


def run_one(label: str, wiring: Wiring, sandboxes: SandboxSet, clock: Clock,
            profile: bool = False, sample: bool = False,
            slow: SlowStatements | None = None) -> dict[str, Any]:
    for sb in sandboxes:
        sb.app.requests.reset()
        sb.app.connections.reset()
    clock.stages = {}
    wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    clock.mark = (wall, cpu)
    waited = machine_counters()
    if slow is not None:
        slow.active = True
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    sampler = ThreadSampler() if sample else None
    with sampler or contextlib.nullcontext():
        report = one_cycle(wiring, progress=clock.progress)
    if sampler is not None:
        sampler.report()
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(r"sync/|state/|rules/", 40)
    total = (time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - own)
    waited = {k: v - waited[k] for k, v in machine_counters().items() if k in waited}
    calls = api_calls(sandboxes)
    sent = sum(c.push.sent for c in report.connections.values() if c.push)
    print(f"\n== {label}: wall {total[0]:.2f}s, cpu {total[1]:.2f}s, own cpu {total[2]:.2f}s, "
          f"evaluation {report.stats.get('evaluation')}, queued {report.stats.get('queued')}, "
          f"writes sent {sent}, customers evaluated {report.stats.get('customers')}")
    for stage, (w, c) in clock.stages.items():
        print(f"   {stage:<34} wall {w:7.3f}s  cpu {c:7.3f}s")
    print("   API calls: " + ", ".join(f"{n} {k}" for n, k in calls.items()))
    print("   connections opened: " + ", ".join(
        f"{sb.connection} {sb.app.connections.accepted}" for sb in sandboxes))
    if waited:
        print("   machine, during the cycle: " + ", ".join(
            f"{k} {v:.3f}s" for k, v in waited.items()))
    if slow is not None:
        slow.active = False
        slow.report()
    return {"wall": total[0], "cpu": total[1], "own": total[2], "calls": sum(calls.values()),
            "sent": sent,
            "evaluate": tuple(clock.stages.get("evaluate", (0.0, 0.0)))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile cycles 3 and 4")
    parser.add_argument("--sample", action="store_true",
                        help="sample the whole process's threads in cycles 3 and 4")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between cycle starts (default: the default "
                        "schedule.cycle_interval)")
    parser.add_argument("--slow", type=float, default=20.0, metavar="MS",
                        help="list the store calls of cycles 3 and 4 taking at least MS ms")
    parser.add_argument("--index-lag", type=float, default=5.0,
                        help="HubSpot sandboxes: seconds until search sees a change")
    args = parser.parse_args()
    quiet_logging()

    clock = Clock()
    # "evaluate" (between pull and push) split into its parts, full and incremental paths
    # (the full path's rules run inside its stream: they are what "evaluate" has left)
    clock.wrap(sync.scale, "match_features", "  (match)")
    clock.wrap(sync.incremental, "rematch", "  (match)")
    clock.wrap(sync.incremental, "evaluate", "  (rules)")
    for module in (sync.batches, sync.incremental):
        clock.wrap(module, "plan_writes", "  (plan)")
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        world = generate(seed=args.seed, customers=args.customers)
        sandboxes = start_world(world, tls_dir=directory / "tls")
        records = sum(len(c.accounts) + len(c.deals) for c in world.crms)
        print(f"scenario: {args.customers} customers, {records} records in "
              f"{len(world.crms)} CRMs (set up in {time.perf_counter() - started:.1f}s)")
        for sb in sandboxes:
            if hasattr(sb.app, "set_search_index_lag"):
                sb.app.set_search_index_lag(args.index_lag)
        try:
            wiring = Wiring(load_settings(write_config(sandboxes, directory)))
            interval = args.interval
            if interval is None:
                interval = DEFAULT_INTERVAL_S
            print(f"cycles start {interval:.0f}s apart; HubSpot search index lag "
                  f"{args.index_lag:g}s", flush=True)
            spacing = Spacing(interval)
            slow = SlowStatements(wiring.store().engine, args.slow / 1000)
            try:
                spacing.wait()
                full = run_one("cycle 1 (full)", wiring, sandboxes, clock)
                spacing.wait()
                run_one("cycle 2 (reads back our writes)", wiring, sandboxes, clock)
                for extra in range(SETTLE_MAX):  # until the vendors' limits let all out
                    spacing.wait()
                    label = f"cycle 3{'abc'[extra - 1]} (again)" if extra else "cycle 3 (no change)"
                    cycle = run_one(label, wiring, sandboxes, clock, args.profile, args.sample,
                                    slow)
                    if cycle["sent"] == 0:
                        break
                edited = edit_share(wiring, sandboxes, args.change, random.Random(args.seed))
                if args.once:
                    engine_for(wiring.store()).index = None
                spacing.wait()
                label = f"cycle 4 ({edited} records edited, {args.change:.0%})"
                partial = run_one(label, wiring, sandboxes, clock, args.profile, args.sample,
                                  slow)
                wiring.store().forget_engine_state(STATE)  # the next cycle evaluates all
                spacing.wait()
                steady = run_one("cycle 5 (no change, full evaluation forced)", wiring,
                                 sandboxes, clock)
                for name, base in (("the first (full) cycle", full),
                                   ("a full cycle without changes", steady)):
                    print(f"the {args.change:.0%} cycle costs {partial['wall'] / base['wall']:.1%}"
                          f" of {name} in wall time, {partial['cpu'] / base['cpu']:.1%} in CPU, "
                          f"{partial['own'] / base['own']:.1%} in own CPU; "
                          f"its evaluate stage {partial['evaluate'][0] / base['evaluate'][0]:.1%}"
                          f" (wall), {partial['evaluate'][1] / base['evaluate'][1]:.1%} (CPU)")
            finally:
                wiring.close()
        finally:
            sandboxes.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
