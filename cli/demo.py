"""``channelsync demo``: the whole product on a fresh machine, against local sandboxes.

Starts the four vendor sandboxes with the default scenario, writes a ready config, runs a
full cycle, makes three realistic changes in the sandbox CRMs (a direct rep opens a deal on
a registered customer; a registration passes its inactivity limit; a second distributor
registers the same customer), runs another cycle, and shows what each CRM now says.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.cycles import one_cycle
from cli.democonfig import write_config
from config.loader import load_settings
from config.logs import configure_logging
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from state.rows import RecordKey
from wiring import Wiring

DEFAULT_DIR = Path(".channelsync/demo")


def demo_command(args: argparse.Namespace, _settings: Any) -> int:
    console = Console()
    configure_logging("WARNING")  # the demo speaks through its own output
    workdir = Path(getattr(args, "workdir", None) or DEFAULT_DIR)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh store every time
    workdir.mkdir(parents=True)
    console.rule("[bold]Channel Sync demo")
    with console.status("Generating the scenario and starting the sandboxes..."):
        world = generate(seed=getattr(args, "seed", 7), customers=getattr(args, "customers", 400))
        sandboxes = start_world(world, tls_dir=workdir / "tls")
    try:
        return _run(console, workdir, sandboxes, keep_running=args.keep_running)
    finally:
        if not args.keep_running:
            sandboxes.stop()


def _run(console: Console, workdir: Path, sandboxes: SandboxSet, *, keep_running: bool) -> int:
    for sb in sandboxes:
        who = sb.distributor_id or "manufacturer"
        console.print(f"  {sb.connection:<14} {sb.vendor:<10} {who:<16} {sb.base_url}")
    managers = _channel_managers(sandboxes)
    config_path = write_config(sandboxes, workdir, channel_managers=managers)
    console.print(f"Config written to [bold]{config_path}[/bold] (secrets in files beside it)")
    wiring = Wiring(load_settings(config_path))
    try:
        first = _cycle(console, wiring, "Cycle 1: full pull, match, evaluate, write back")
        if not first.ok:
            _print_failures(console, first)
            return 1
        console.print(_cycle_line(first))
        changes = make_changes(wiring, sandboxes, console)
        second = _cycle(console, wiring, "Cycle 2: incremental, after the changes")
        console.print(_cycle_line(second))
        _summary(console, wiring, sandboxes, changes, first, second)
        report, verdicts = _scorecards(wiring, workdir)
        console.rule("[bold]Which distributors really sell")
        for line in verdicts:
            console.print(line)
        console.print("Scorecard report, to open in a browser:")
        console.print(f"  [bold]{report}[/bold]", soft_wrap=True)
        _next_steps(console, config_path, sandboxes, keep_running)
        if keep_running:
            _keep_running(console, wiring)
        return 0 if second.ok else 1
    finally:
        wiring.close()


def _channel_managers(sandboxes: SandboxSet) -> dict[str, str]:
    """Route inquiries to the first user of each internal CRM (the sandbox's channel manager)."""
    managers: dict[str, str] = {}
    for sb in sandboxes:
        if sb.role != "internal":
            continue
        users = [v for k, v in sb.seed_ids.items() if k.startswith("user:")]
        if sb.vendor == "salesforce" and users:
            app: Any = sb.app
            row = app.org.get("User", users[0])
            managers[sb.connection] = row["Email"] if row else users[0]
        elif users:
            managers[sb.connection] = users[0]
    return managers


def _cycle(console: Console, wiring: Wiring, title: str) -> Any:
    runtimes = wiring.runtimes()
    steps = len(runtimes) * 2 + 1
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title, total=steps)

        def tell(step: str, name: str) -> None:
            label = {
                "pull": f"pulled {name}",
                "evaluate": "matched and evaluated",
                "push": f"pushed to {name}",
            }[step]
            progress.update(task, advance=1, description=f"{title}: {label}")

        return one_cycle(wiring, trigger="demo", progress=tell)


def _cycle_line(report: Any) -> str:
    pulled = sum(c.records for r in report.connections.values() for c in r.pulled.values())
    sent = sum(r.push.sent for r in report.connections.values() if r.push)
    return (
        f"  run {report.run_id}: {pulled} records read, {sent} field writes sent, "
        f"{report.seconds:.1f}s"
    )


def _print_failures(console: Console, report: Any) -> None:
    for name, conn in report.connections.items():
        if conn.error:
            console.print(f"[red]{name}[/red]: {conn.error}")


def _app(sandboxes: SandboxSet, connection: str) -> Any:
    """The vendor sandbox app behind a connection, with its vendor-specific user API."""
    return sandboxes[connection].app


# -- the three changes --------------------------------------------------------------------
def make_changes(wiring: Wiring, sandboxes: SandboxSet, console: Console) -> dict[str, Any]:
    """Three things that happen in a channel every week, made in the sandbox CRMs."""
    store = wiring.store()
    links = {(k.connection, k.external_id): c for k, c in store.customer_links().items()}
    accounts = {a.key: a for a in store.load_accounts()}
    opps = store.load_opportunities()
    now = datetime.now(UTC)
    changes: dict[str, Any] = {}

    registered = [
        o
        for o in opps
        if o.connection == "hs-northwind"
        and o.registered_at
        and o.stage_category == "open"
        and now - o.registered_at < timedelta(days=60)
        and (o.registration_status or "active") in ("active", "extended", "pending")
        and o.last_activity_at
        and now - o.last_activity_at < timedelta(days=20)
    ]
    sf_account_by_customer = {
        links[(k.connection, k.external_id)]: a
        for k, a in accounts.items()
        if k.connection == "sf-direct"
        and (k.connection, k.external_id) in links
        and not a.partner_id
    }
    target = next(
        (
            o
            for o in registered
            if links.get(("hs-northwind", o.account_ref or "")) in sf_account_by_customer
        ),
        None,
    )
    if target is not None:
        customer = links[("hs-northwind", target.account_ref or "")]
        sf_account = sf_account_by_customer[customer]
        org = _app(sandboxes, "sf-direct").org
        opp_id = org.create(
            "Opportunity",
            {
                "Name": f"{sf_account.name} - direct expansion",
                "AccountId": sf_account.external_id,
                "StageName": "Prospecting",
                "CloseDate": (now + timedelta(days=60)).date(),
                "Amount": 48000.0,
            },
        )
        changes["direct_deal"] = ("sf-direct", "opportunity", opp_id, sf_account.name)
        console.print(
            f"  A direct rep opened a deal on [bold]{sf_account.name}[/bold], "
            f"registered by dist-northwind (Salesforce {opp_id})"
        )

        company = accounts[RecordKey("hs-northwind", "account", target.account_ref or "")]
        hs = _app(sandboxes, "hs-brightline").account
        company_id = hs.create(
            "companies",
            {
                "name": (company.name or "Customer").upper(),
                "domain": company.domain,
                "country": company.country,
            },
        )
        deal_id = hs.create(
            "deals",
            {
                "dealname": f"{company.name} - rollout",
                "amount": "31000",
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
                "registered_by": "dist-brightline",
                "registration_date": int(now.timestamp() * 1000),
                "registration_status": "pending",
            },
            companies=[company_id],
        )
        changes["second_registration"] = ("hs-brightline", "opportunity", deal_id, company.name)
        console.print(
            f"  dist-brightline registered the same customer in its HubSpot (deal {deal_id})"
        )

    stale = next(
        (o for o in registered if target is None or o.external_id != target.external_id), None
    )
    if stale is not None:
        hs = _app(sandboxes, "hs-northwind").account
        quiet_since = now - timedelta(days=31)
        hs.update(
            "deals", stale.external_id, {"notes_last_updated": int(quiet_since.timestamp() * 1000)}
        )
        changes["inactive_registration"] = (
            "hs-northwind",
            "opportunity",
            stale.external_id,
            stale.name,
        )
        console.print(f"  Registration [bold]{stale.name}[/bold] has had no activity for 31 days")
    return changes


# -- the summary -------------------------------------------------------------------------
def _summary(
    console: Console,
    wiring: Wiring,
    sandboxes: SandboxSet,
    changes: dict[str, Any],
    first: Any,
    second: Any,
) -> None:
    store = wiring.store()
    findings = Counter(f.kind for f in store.open_findings())
    stats = second.stats
    console.rule("[bold]What Channel Sync found")
    console.print(
        f"Customers matched: {stats.get('customers')} end customers from "
        f"{stats.get('accounts')} accounts in {len(list(sandboxes))} CRMs "
        f"({stats.get('review_items')} uncertain pairs for `channelsync review`)"
    )
    table = Table(title="Open findings by kind")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind, count in sorted(findings.items()):
        table.add_row(kind, str(count))
    console.print(table)

    per_crm = Table(title="Per CRM")
    for column in ("connection", "vendor", "writes sent", "pending", "dead", "API calls"):
        per_crm.add_column(column)
    counts = store.outbox_counts()
    for sb in sandboxes:
        c = counts.get(sb.connection, {})
        per_crm.add_row(
            sb.connection,
            sb.vendor,
            str(c.get("sent", 0)),
            str(c.get("pending", 0) + c.get("failed", 0)),
            str(c.get("dead", 0)),
            str(sb.app.requests.count()),
        )
    console.print(per_crm)

    console.rule("[bold]Example records, as they now read in each CRM")
    for label, key in changes.items():
        connection, _entity, record_id, name = key
        fields = read_back(sandboxes, connection, record_id)
        console.print(f"[bold]{label.replace('_', ' ')}[/bold]: {connection} {record_id} ({name})")
        for field, value in fields.items():
            console.print(f"    {field} = {value!r}")


READBACK_FIELDS: dict[str, tuple[str, ...]] = {
    "salesforce": (
        "Channel_Conflict__c",
        "Channel_Conflict_Reason__c",
        "Channel_Owner__c",
        "Routed_To__c",
    ),
    "hubspot": (
        "channel_conflict",
        "channel_conflict_reason",
        "channel_owner",
        "registration_status",
        "registration_expiry_date",
    ),
}


def read_back(sandboxes: SandboxSet, connection: str, record_id: str) -> dict[str, Any]:
    """A record's write-back fields, read from the sandbox's own data (not our store)."""
    sb = sandboxes[connection]
    app: Any = sb.app
    if sb.vendor == "salesforce":
        row = app.org.get("Opportunity", record_id) or {}
        return {f: row.get(f) for f in READBACK_FIELDS["salesforce"]}
    if sb.vendor == "hubspot":
        props = app.account.get("deals", record_id)
        return {f: props.get(f) for f in READBACK_FIELDS["hubspot"]}
    return {}


def _scorecards(wiring: Wiring, workdir: Path) -> tuple[Path, list[str]]:
    from rules.report import render
    from sync.evaluate import stored_scorecards

    report = stored_scorecards(wiring.store(), wiring.runtimes(), policy=wiring.policy(),
                               now=datetime.now(UTC), config=wiring.scorecards())
    path = (workdir / "scorecards.html").resolve()
    path.write_text(render(report, "html"))
    lines = []
    for card in report.scorecards:
        rate = card.win_rate_registered
        won = f"wins {rate:.0%} of its registrations" if rate is not None else "no decided deals"
        lines.append(f"  {card.distributor_id:<16} {won:<32} {card.verdict.replace('_', ' ')}")
    return path, lines


def _next_steps(console: Console, config: Path, sandboxes: SandboxSet, keep: bool) -> None:
    console.rule("[bold]Look further")
    console.print(f"  CONFIG={config}", soft_wrap=True)
    for command, what in (("status", "runs, writes, budgets"),
                          ("plan", "the next cycle's writes"),
                          ("review", "uncertain matches"),
                          ("report scorecards", "distributor scorecards")):
        console.print(f"  channelsync --config $CONFIG {command:<17} # {what}", soft_wrap=True)
    if keep:
        for sb in sandboxes:
            console.print(f"  {sb.connection}: {sb.base_url}")
    else:
        console.print("  (`channelsync demo --keep-running` keeps the sandboxes and the daemon up)")


def _keep_running(console: Console, wiring: Wiring) -> None:
    from sync.daemon import Daemon
    from sync.leader import leadership_for
    from sync.metrics import Health

    health = Health(
        connections=[rt.name for rt in wiring.runtimes()], stale_after=timedelta(minutes=30)
    )
    daemon = Daemon(
        cycle=lambda stop: one_cycle(wiring, stop=stop, trigger="schedule", health=health),
        interval=wiring.settings.schedule.cycle_interval,
        leader=leadership_for(wiring.store().engine),
        health=health,
    )
    daemon.install_signal_handlers()
    console.print("Daemon running with the sandboxes; Ctrl-C stops both.")
    daemon.run_forever()
