"""The Salesforce read cursor: (SystemModstamp, Id) plus the ids seen near the boundary.

JSON form: ``{"v": 1, "since": "2026-03-01T12:00:00.000+0000", "id": "006...",
"recent": {"006...": "2026-03-01T11:58:00.000+0000", ...}}``. ``since`` is a
SystemModstamp exactly as Salesforce returns it (UTC, ``+0000``), which orders as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Cursor

VERSION = 1
EPOCH_STAMP = "1970-01-01T00:00:00.000+0000"  # where a full read starts
MAX_RECENT = 2000  # boundary ids kept; beyond this a lookback may re-deliver (harmless)


def stamp_text(moment: datetime) -> str:
    """A datetime in Salesforce's own text form, comparable with returned SystemModstamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_stamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"not a datetime: {text!r}")
    return datetime.fromisoformat(text)


@dataclass(slots=True)
class ReadPosition:
    since: str  # SystemModstamp of the last record delivered (or where an empty read began)
    last_id: str = ""
    recent: dict[str, str] = field(default_factory=dict)  # id -> SystemModstamp delivered

    @classmethod
    def from_cursor(cls, cursor: Cursor | None) -> ReadPosition | None:
        """``None`` for a missing or unusable cursor (the read starts from scratch)."""
        if not cursor or cursor.get("v") != VERSION or not isinstance(cursor.get("since"), str):
            return None
        try:
            parse_stamp(cursor["since"])
        except ValueError:
            return None
        recent = cursor.get("recent") or {}
        return cls(str(cursor["since"]), str(cursor.get("id") or ""),
                   {str(k): str(v) for k, v in recent.items()} if isinstance(recent, dict)
                   else {})

    @property
    def since_at(self) -> datetime:
        return parse_stamp(self.since)

    def already_delivered(self, record_id: str, stamp: str) -> bool:
        return self.recent.get(record_id) == stamp

    def advance(self, record_id: str, stamp: str) -> None:
        if stamp > self.since or (stamp == self.since and record_id > self.last_id):
            self.since, self.last_id = stamp, record_id
        self.recent.pop(record_id, None)
        self.recent[record_id] = stamp

    def trim(self, lookback: timedelta) -> None:
        """Forget boundary ids older than the lookback window, and the oldest beyond the cap."""
        cutoff = stamp_text(self.since_at - lookback)
        recent = self.recent
        while recent:
            oldest = next(iter(recent))
            if recent[oldest] >= cutoff and len(recent) <= MAX_RECENT:
                break
            del recent[oldest]

    def cursor(self) -> dict[str, Any]:
        return {"v": VERSION, "since": self.since, "id": self.last_id,
                "recent": dict(self.recent)}
