"""``report scorecards``: which distributors really sell, across every CRM in the store."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from config.durations import parse_period_months
from rules.report import render
from sync.evaluate import stored_scorecards
from wiring import Wiring


def scorecards_command(args: argparse.Namespace, wiring: Wiring) -> int:
    config = wiring.scorecards()
    if args.period:
        try:
            config = replace(config, period_months=parse_period_months(args.period))
        except ValueError as exc:
            print(f"--period {args.period}: {exc}", file=sys.stderr)
            return 2
    if args.territory and args.territory not in config.territories:
        known = ", ".join(sorted(config.territories)) or "none configured"
        print(f"--territory {args.territory}: unknown territory (known: {known})", file=sys.stderr)
        return 2
    try:
        report = stored_scorecards(wiring.store(), wiring.runtimes(), policy=wiring.policy(),
                                   now=datetime.now(UTC), config=config,
                                   territory=args.territory)
    finally:
        wiring.close()
    text = render(report, args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(
            f"wrote {args.format} scorecards for {len(report.scorecards)} distributors "
            f"to {args.output}"
        )
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
