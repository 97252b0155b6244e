"""The composition root and the ``channelsync`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from config.errors import ConfigError
from config.logs import configure_from_settings, configure_logging
from config.models import Settings

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2  # bad config or bad command line
EXIT_NOT_IMPLEMENTED = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the run failed (see the log and the run history)
  2    bad configuration or command line; nothing was changed
  3    not implemented yet
  130  interrupted
"""

Handler = Callable[[argparse.Namespace, Settings | None], int]


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand's handler; ``needs_config`` loads and validates the config first (exit 2
    on any problem, before anything touches the store) and passes it as ``settings``."""

    handler: Handler
    needs_config: bool = True


def not_implemented(args: argparse.Namespace, settings: Settings | None) -> int:
    print(f"channelsync {args.command_key}: not implemented yet", file=sys.stderr)
    return EXIT_NOT_IMPLEMENTED


def check_config(args: argparse.Namespace, settings: Settings | None) -> int:
    assert settings is not None  # needs_config guarantees it
    print(describe_settings(settings))
    if args.online:
        from cli.online import check_online

        failed = False
        for name, problems in check_online(settings).items():
            if not problems:
                print(f"  {name}: every mapped field exists in the CRM and fits")
            for problem in problems:
                failed = True
                print(f"  {name}: {problem}", file=sys.stderr)
        return EXIT_USAGE if failed else EXIT_OK
    return EXIT_OK


def describe_settings(settings: Settings) -> str:
    """The ``OK: ...`` summary: connections, store (password hidden)."""
    lines = [
        f"OK: {len(settings.connections)} connection"
        f"{'s' if len(settings.connections) != 1 else ''}"
        f" ({len(settings.enabled_connections)} enabled), store {_safe_url(settings.store.url)}"
    ]
    for conn in settings.connections:
        who = f"distributor {conn.distributor_id}" if conn.distributor_id else "internal"
        state = "" if conn.enabled else ", disabled"
        entities = ", ".join(conn.mapping.entities)
        source = conn.mapping.source
        lines.append(f"  {conn.name}: {conn.vendor}, {who}{state}; mapping {source} ({entities})")
    return "\n".join(lines)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def wired(run: Callable[[argparse.Namespace, Any], int]) -> Handler:
    """A handler that gets the process's ``Wiring`` (store, connectors) from the settings."""

    def handler(args: argparse.Namespace, settings: Settings | None) -> int:
        from wiring import Wiring

        assert settings is not None  # needs_config guarantees it
        return run(args, Wiring(settings))

    return handler


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace, Any], int]:
    def call(args: argparse.Namespace, context: Any) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), name)(args, context))

    return call


def sandbox_serve(args: argparse.Namespace, settings: Settings | None) -> int:
    from sandbox.cli import serve_command

    return serve_command(
        args.vendors.split(",") if args.vendors else None,
        args.seed,
        args.customers,
        Path(args.fixture) if args.fixture else None,
        args.json,
    )


# Subcommand (as typed, sub-subcommands joined by a space) -> handler.
COMMANDS: dict[str, Command] = {
    "check-config": Command(check_config),
    "sync": Command(wired(_lazy("cli.cycles", "sync_command"))),
    "run": Command(wired(_lazy("cli.cycles", "run_command"))),
    "plan": Command(wired(_lazy("cli.cycles", "plan_command"))),
    "status": Command(wired(_lazy("cli.inspect", "status_command"))),
    "review": Command(wired(_lazy("cli.inspect", "review_command"))),
    "demo": Command(_lazy("cli.demo", "demo_command"), needs_config=False),
    "sandbox serve": Command(sandbox_serve, needs_config=False),
    "report scorecards": Command(wired(_lazy("cli.reports", "scorecards_command"))),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelsync",
        description="Keeps a manufacturer's sales channel honest across its CRMs.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_config = os.environ.get("CHANNELSYNC_CONFIG", "channelsync.yaml")
    parser.add_argument(
        "--config",
        default=default_config,
        metavar="PATH",
        help="configuration file (default: $CHANNELSYNC_CONFIG or channelsync.yaml)",
    )
    # Also accepted after the subcommand; SUPPRESS keeps the global value when absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help="as above")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, help_text: str, into: argparse._SubParsersAction | None = None, key: str = ""
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = (into or subs).add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        sub.set_defaults(command_key=key or name)
        return sub

    check = add("check-config", "Validate the configuration and every mapping (offline).")
    check.add_argument(
        "--online", action="store_true", help="also check mapped fields against each live CRM"
    )
    sync = add("sync", "Run cycles: pull, match, evaluate the policy, plan and push.")
    sync.add_argument("--once", action="store_true", help="run one cycle and exit")
    add("run", "Run the daemon: cycles on the schedule, health and metrics endpoint.")
    plan = add("plan", "Show what the next cycle would write, per CRM and field (dry run).")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument(
        "--no-pull", action="store_true", help="plan from the store without reading the CRMs"
    )
    status = add("status", "Show connections, cursors, last runs and the outbox.")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    review = add(
        "review", "List uncertain customer matches and record same / never-the-same decisions."
    )
    review.add_argument("action", nargs="?", choices=("list", "same", "never"), default="list")
    review.add_argument("item", nargs="?", type=int, help="review item id (from the list)")
    review.add_argument("--by", default=os.environ.get("USER", "cli"), help="who decides")
    review.add_argument("--json", action="store_true", help="machine-readable output")
    demo = add("demo", "Start the four vendor sandboxes with seeded data and run cycles.")
    demo.add_argument(
        "--keep-running", action="store_true", help="keep the sandboxes and daemon running"
    )
    sandbox = add("sandbox", "Local emulators of the vendor APIs.")
    sandbox_subs = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve = add(
        "serve",
        "Serve the scenario's vendor sandboxes on free local ports until stopped.",
        sandbox_subs,
        "sandbox serve",
    )
    serve.add_argument(
        "--vendors", metavar="LIST", help="comma-separated: salesforce,hubspot,pipedrive,dynamics"
    )
    serve.add_argument("--seed", type=int, default=7, help="scenario seed (default 7)")
    serve.add_argument("--customers", type=int, default=400, help="end customers (default 400)")
    serve.add_argument("--fixture", metavar="FILE", help="seed from a fixture file instead")
    serve.add_argument("--json", action="store_true", help="print URLs and credentials as JSON")
    report = add("report", "Reports from the store.")
    report_subs = report.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    scorecards = add(
        "scorecards", "Distributor scorecards for a period.", report_subs, "report scorecards"
    )
    scorecards.add_argument(
        "--period", metavar="PERIOD", help="e.g. 18m or 2y (default: scorecards.period)"
    )
    scorecards.add_argument("--territory", metavar="NAME", help="only this territory")
    scorecards.add_argument(
        "--format", choices=("table", "csv", "json", "html"), default="table", help="output format"
    )
    scorecards.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load the config if the command needs it, run the handler."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2) end here
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command = COMMANDS[args.command_key]
    settings: Settings | None = None
    if command.needs_config:
        from config.loader import load_settings  # deferred: --help stays fast

        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            configure_logging()
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        configure_from_settings(settings.logging)
    else:
        configure_logging()
    try:
        return command.handler(args, settings)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def cli() -> int:
    """Console-script entry point (``channelsync``)."""
    return main()


if __name__ == "__main__":
    sys.exit(main())
