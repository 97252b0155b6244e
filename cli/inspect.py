"""``status`` and ``review``: what the store says about runs, writes and matches."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import orjson

from state.rows import RecordKey
from wiring import Wiring


def status_data(wiring: Wiring) -> dict[str, Any]:
    store = wiring.store()
    last = store.last_connection_runs()
    outbox = store.outbox_counts()
    runs = store.recent_runs(limit=5)
    dead = store.dead_letters()
    connections = {}
    for conn in wiring.settings.connections:
        run = last.get(conn.name)
        states = outbox.get(conn.name, {})
        connections[conn.name] = {
            "vendor": conn.vendor,
            "role": conn.role,
            "distributor_id": conn.distributor_id,
            "enabled": conn.enabled,
            "last_run": run.started_at.isoformat() if run else None,
            "result": run.status if run else "never run",
            "error": run.error if run else None,
            "counts": run.counts if run else {},
            "writes_pending": states.get("pending", 0) + states.get("failed", 0),
            "writes_dead": states.get("dead", 0),
            "budget": run.budget if run else None,
        }
    return {
        "connections": connections,
        "recent_runs": [
            {
                "id": r.id,
                "started_at": r.started_at.isoformat(),
                "status": r.status,
                "trigger": r.trigger,
                "error": r.error,
            }
            for r in runs
        ],
        "dead_letters": [
            {
                "connection": d.connection,
                "entity": d.entity,
                "record": d.external_id,
                "field": d.field,
                "value": d.value,
                "attempts": d.attempts,
                "error": d.last_error,
            }
            for d in dead[:100]
        ],
        "review_items_open": len(store.review_items()),
    }


def status_command(args: argparse.Namespace, wiring: Wiring) -> int:
    try:
        data = status_data(wiring)
    finally:
        wiring.close()
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())
        return 0
    print_status(data)
    return 0


def print_status(data: dict[str, Any], *, console: Any = None,
                 now: datetime | None = None) -> None:
    """The status as a table that fits an 80-column terminal: each cell stacks its
    figures on short lines rather than truncating them."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    moment = now or datetime.now(UTC)
    table = Table(title="Connections", box=None, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold underline")
    for column in ("connection", "for", "last run"):
        table.add_column(column, no_wrap=True)
    for column in ("pulled", "writes", "budget"):  # figures
        table.add_column(column, justify="right", no_wrap=True)
    for name, c in data["connections"].items():
        counts = c["counts"] or {}
        pulled = counts.get("pulled", {})
        push = counts.get("push") or {}
        table.add_row(
            f"{name}\n[dim]{c['vendor']}[/dim]",
            c["distributor_id"] or c["role"],
            f"{_result(c)}\n[dim]{_age(c['last_run'], moment)}[/dim]",
            "\n".join(f"{v.get('records', 0):,} {_ENTITY_SHORT.get(e, e)}"
                      for e, v in pulled.items()) or "-",
            f"{push.get('sent', 0):,} sent\n{c['writes_pending']:,} queued\n"
            f"{_dead(c['writes_dead'])}",
            _budget(c["budget"]),
        )
    console.print(table)
    for name, c in data["connections"].items():
        if c["error"]:
            console.print(f"[red]{name}[/red]: {c['error']}")
    if data["dead_letters"]:
        console.print(f"Dead letters ({len(data['dead_letters'])}):")
        for d in data["dead_letters"][:20]:
            console.print(
                f"  {d['connection']} {d['entity']} {d['record']} {d['field']}"
                f" = {d['value']!r}: {d['error']} after {d['attempts']} attempts"
            )
    console.print(f"Open review items: {data['review_items_open']} (channelsync review)")


_ENTITY_SHORT = {"account": "acc", "opportunity": "opp"}
_RESULT_STYLE = {"ok": "green", "failed": "red", "partial": "yellow"}


def _result(c: dict[str, Any]) -> str:
    result = str(c["result"])
    style = _RESULT_STYLE.get(result)
    return f"[{style}]{result}[/{style}]" if style else result


def _dead(count: int) -> str:
    return f"[red]{count:,} dead[/red]" if count else "0 dead"


def _age(started: str | None, now: datetime) -> str:
    """``42s ago``, ``12m ago``, ``3h ago``, ``2d ago`` (the JSON keeps the timestamp)."""
    if not started:
        return "never"
    at = datetime.fromisoformat(started)
    seconds = max(0, int((now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _budget(budget: dict[str, Any] | None) -> str:
    """``228 requests`` over ``3.8% of 6k``: used against this connection's share."""
    if not budget:
        return "-"
    used = int(budget.get("used") or 0)
    cap = budget.get("share_limit") or budget.get("limit")
    text = f"{used:,} {budget.get('unit') or ''}".rstrip()
    if not cap:
        return text
    return f"{text}\n[dim]{100 * used / float(cap):.1f}% of {_short(float(cap))}[/dim]"


def _short(value: float) -> str:
    for suffix, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            scaled = value / size
            decimals = 0 if scaled >= 10 or scaled.is_integer() else 1
            return f"{scaled:.{decimals}f}{suffix}"
    return f"{value:.0f}"


def review_command(args: argparse.Namespace, wiring: Wiring) -> int:
    try:
        store = wiring.store()
        if args.action in ("same", "never"):
            by_id = {i.id: i for i in store.review_items(status=None)}
            item = by_id.get(args.item)
            if item is None:
                print(f"no review item {args.item}; `channelsync review` lists them")
                return 2
            store.record_match_decision(item.a, item.b, args.action, by=args.by)
            print(
                f"recorded: {_key(item.a)} and {_key(item.b)} are "
                f"{'the same customer' if args.action == 'same' else 'never the same'};"
                " applied on the next cycle"
            )
            return 0
        items = store.review_items()
        names = _names(store)
    finally:
        wiring.close()
    if args.json:
        print(
            orjson.dumps(
                [
                    {
                        "id": i.id,
                        "a": list(i.a),
                        "b": list(i.b),
                        "score": i.score,
                        "a_name": names.get(i.a),
                        "b_name": names.get(i.b),
                        "evidence": i.evidence,
                    }
                    for i in items
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return 0
    if not items:
        print("Nothing to review: every match was certain or already decided.")
        return 0
    print(f"{len(items)} uncertain pair(s); decide with `channelsync review same|never ID`:")
    for i in items:
        print(
            f"  #{i.id} score {i.score:.2f}: {names.get(i.a)!r} ({_key(i.a)})"
            f"  vs  {names.get(i.b)!r} ({_key(i.b)})"
        )
    return 0


def _key(k: RecordKey) -> str:
    return f"{k.connection}/{k.external_id}"


def _names(store: Any) -> dict[RecordKey, str | None]:
    return {a.key: a.name for a in store.load_accounts()}


def now() -> datetime:
    return datetime.now(UTC)
