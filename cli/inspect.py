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


def print_status(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Connections", expand=False)
    for column in (
        "connection",
        "vendor/role",
        "last run",
        "result",
        "pulled",
        "writes",
        "pending",
        "dead",
        "budget used",
    ):
        table.add_column(column)
    for name, c in data["connections"].items():
        pulled = c["counts"].get("pulled", {}) if c["counts"] else {}
        pulled_text = " ".join(f"{e[:3]} {v.get('records', 0)}" for e, v in pulled.items()) or "-"
        push = (c["counts"] or {}).get("push") or {}
        writes = f"{push.get('sent', 0)} sent" if push else "-"
        budget = c["budget"] or {}
        budget_text = "-"
        if budget:
            cap = budget.get("share_limit") or budget.get("limit")
            budget_text = f"{budget.get('used', 0)}/{cap if cap else '?'} {budget.get('unit', '')}"
        who = c["role"] + (f" ({c['distributor_id']})" if c["distributor_id"] else "")
        table.add_row(
            name,
            f"{c['vendor']} / {who}",
            (c["last_run"] or "never")[:19],
            c["result"],
            pulled_text,
            writes,
            str(c["writes_pending"]),
            str(c["writes_dead"]),
            budget_text,
        )
    console = Console()
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
