"""``channelsync status`` on an 80-column terminal: every figure whole, none truncated."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from cli.inspect import print_status

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _connection(vendor: str, role: str, distributor: str | None, *, ran: timedelta | None,
                used: int, cap: int, unit: str, dead: int = 0) -> dict[str, Any]:
    return {
        "vendor": vendor, "role": role, "distributor_id": distributor, "enabled": True,
        "last_run": (NOW - ran).isoformat() if ran is not None else None,
        "result": "ok" if ran is not None else "never run", "error": None,
        "counts": {"pulled": {"account": {"records": 12_345}, "opportunity": {"records": 67}},
                   "push": {"sent": 1_234}} if ran is not None else {},
        "writes_pending": 5, "writes_dead": dead,
        "budget": {"used": used, "share_limit": cap, "unit": unit} if ran is not None else None,
    }


def _render(width: int) -> str:
    data = {
        "connections": {
            "sf-direct-emea": _connection("salesforce", "internal", None,
                                          ran=timedelta(seconds=42), used=14, cap=100_000,
                                          unit="requests"),
            "hs-brightline-de": _connection("hubspot", "distributor", "dist-brightline",
                                            ran=timedelta(hours=3), used=16, cap=650_000,
                                            unit="requests", dead=2),
            "pd-alpine": _connection("pipedrive", "distributor", "dist-alpine",
                                     ran=timedelta(days=2), used=710, cap=300_000,
                                     unit="tokens"),
            "d365-new": _connection("dynamics", "internal", None, ran=None, used=0, cap=1,
                                    unit="requests"),
        },
        "recent_runs": [], "dead_letters": [], "review_items_open": 3,
    }
    out = io.StringIO()
    print_status(data, console=Console(file=out, width=width, color_system=None), now=NOW)
    return out.getvalue()


def test_every_figure_is_whole_at_80_columns() -> None:
    text = _render(80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for expected in ("sf-direct-emea", "hs-brightline-de", "dist-brightline", "salesforce",
                     "12,345 acc", "67 opp", "1,234 sent", "5 queued", "2 dead",
                     "14 requests", "0.0% of 100k", "710 tokens", "0.2% of 300k",
                     "42s ago", "3h ago", "2d ago", "never run", "Open review items: 3"):
        assert expected in text, expected


def test_a_connection_that_never_ran_shows_dashes_not_zeros() -> None:
    row = next(line for line in _render(100).splitlines() if "d365-new" in line)
    assert "never run" in row
    assert row.split()[-4:] == ["-", "0", "sent", "-"]  # nothing pulled, no budget figure
