"""Benchmark: what a 1% cycle's fixed work costs, and how it moves with the idle time before it.

At the default scenario's 400 customers a 1% cycle is almost all fixed work (a read per
entity and connection, a write per page, the run's bookkeeping), and ``bench_cycle.py``
saw the same cycle take two to three times more CPU from one run to the next. This runs
``--cycles`` 1% cycles in one process, ``--gap`` seconds apart (the edits made just
before each), after two cycles and a ``--settle`` wait (HubSpot's allowance for its
search index then covers no write-back echo), and prints each cycle's own CPU (the
cycle's thread: the product without the in-process sandboxes), their median, the store
statements and commits of the last cycle and its API calls. The sandboxes' servers close
a connection idle for ``--idle-timeout`` seconds (60 by default, as before): below
``--gap`` every cycle connects again, as a daemon's cycles minutes apart do.

    PYTHONPATH=. python bench/bench_cycle_gap.py [--customers 400] [--cycles 10]
        [--gap 1.5] [--idle-timeout 60] [--settle 125]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.bench_cycle import api_calls, edit_share
from bench.probes import quiet_logging
from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from sandbox.launch import start_world
from sandbox.scenario import generate
from wiring import Wiring


class StatementCount:
    """Statements and commits the store's engine ran since the last :meth:`reset`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements = self.commits = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)

    def reset(self) -> None:
        self.statements = self.commits = 0

    def _statement(self, *_args: Any, **_kwargs: Any) -> None:
        self.statements += 1

    def _commit(self, *_args: Any, **_kwargs: Any) -> None:
        self.commits += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.5,
                        help="seconds between the edits and the next cycle")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="the sandboxes close a connection idle this long")
    parser.add_argument("--settle", type=float, default=125.0,
                        help="seconds waited after the first two cycles")
    args = parser.parse_args()
    quiet_logging()
    with tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp:
        directory = Path(tmp)
        sandboxes = start_world(generate(seed=args.seed, customers=args.customers),
                                tls_dir=directory / "tls", idle_timeout_s=args.idle_timeout)
        wiring = Wiring(load_settings(write_config(sandboxes, directory)))
        try:
            one_cycle(wiring)
            one_cycle(wiring)
            time.sleep(args.settle)
            one_cycle(wiring)
            count = StatementCount(wiring.store().engine)
            rng = random.Random(args.seed)
            own: list[float] = []
            for _ in range(args.cycles):
                edit_share(wiring, sandboxes, 0.01, rng)
                time.sleep(args.gap)
                count.reset()
                for sb in sandboxes:
                    sb.app.requests.reset()
                started = time.thread_time()
                one_cycle(wiring)
                own.append(time.thread_time() - started)
            print(f"{args.cycles} 1% cycles, {args.gap:g} s apart, connections closed after "
                  f"{args.idle_timeout:g} s idle; own CPU per cycle (ms): "
                  + " ".join(f"{1000 * s:.0f}" for s in own))
            print(f"median {1000 * statistics.median(own):.1f} ms, lowest "
                  f"{1000 * min(own):.1f} ms; the last cycle: {count.statements} statements, "
                  f"{count.commits} commits, API calls {api_calls(sandboxes)}")
        finally:
            wiring.close()
            sandboxes.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
