"""Run every benchmark at its default size, one after the other (``make bench``).

Each benchmark prints its own figures; BENCHMARKS.md records them with the machine and
the date. Large runs (``--big``) are left to the reader: see each script's ``--help``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_mapping.py",
    "bench_store.py",
    "bench_salesforce.py",
    "bench_hubspot.py",
    "bench_pipedrive.py",
    "bench_dynamics.py",
    "bench_matching.py",
    "bench_rules.py",
    "bench_scorecards.py",
    "bench_cycle.py",
    "bench_cycle_gap.py",
]


def main() -> int:
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        print(f"== {name}: exit {result.returncode} in {time.monotonic() - started:.1f}s\n")
        if result.returncode:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
