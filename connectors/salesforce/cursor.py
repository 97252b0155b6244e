"""The Salesforce read cursor: (SystemModstamp, Id) plus the ids seen near the boundary.

JSON form: ``{"v": 1, "since": "2026-03-01T12:00:00.000+0000", "id": "006...",
"queried": "2026-03-01T12:04:10.000+0000",
"recent": {"006...": "2026-03-01T11:58:00.000+0000 9f2c...", ...}}``. ``since`` is a
SystemModstamp exactly as Salesforce returns it (UTC, ``+0000``), which orders as text.

SystemModstamp is set when a transaction starts, and a long one commits up to the
allowance (``lookback``, 5 minutes) later: a query can miss a record whose stamp it has
already passed, and only such a record. ``queried`` is when the read's first query was sent
(the earlier of our clock and the server's ``Date`` less the round trip, so a clock running
ahead does not move it later; whole seconds, rounded down). Every version a read Q could
not see committed after Q was sent, so its transaction started after ``queried - lookback``:
the next read starts at ``min(since, queried - lookback)``, and a delivered (id, stamp)
older than ``queried - lookback`` cannot hide a second version of the same second, so it is
skipped as seen. A newer one is skipped only when its fields are what was delivered (a
digest kept with the stamp): after a write-back the newest second holds the echoes of a
whole batch, which each read would otherwise deliver again until a newer change. A
cursor without ``queried`` (written before it existed) starts at
``since - lookback`` and skips only what is older than ``since``, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connectors.base import Cursor
from connectors.http import http_date

VERSION = 1
EPOCH_STAMP = "1970-01-01T00:00:00.000+0000"  # where a full read starts
MAX_RECENT = 2000  # boundary ids kept; beyond this a lookback may re-deliver (harmless)


def stamp_text(moment: datetime) -> str:
    """A datetime in Salesforce's own text form, comparable with returned SystemModstamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def content_digest(record: Mapping[str, Any]) -> str:
    """The fields of a record as delivered, in 16 hex digits."""
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
                           digest_size=8).hexdigest()


def parse_stamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"not a datetime: {text!r}")
    return datetime.fromisoformat(text)


def query_sent(sent: datetime, date_header: str | None, elapsed_s: float) -> str:
    """When a query was sent, no later than the server's clock says: the server answered
    at ``Date`` (or later), so it received the query no earlier than ``Date - elapsed``."""
    served = http_date(date_header)
    if served is not None:
        sent = min(sent, served - timedelta(seconds=max(0.0, elapsed_s)))
    return stamp_text(sent)


@dataclass(slots=True)
class ReadPosition:
    since: str  # SystemModstamp of the last record delivered (or where an empty read began)
    last_id: str = ""
    # id -> SystemModstamp delivered, then (incremental reads) a space and a digest of
    # the fields delivered
    recent: dict[str, str] = field(default_factory=dict)
    queried: str | None = None  # when the (last) read's first query was sent

    @classmethod
    def from_cursor(cls, cursor: Cursor | None) -> ReadPosition | None:
        """``None`` for a missing or unusable cursor (the read starts from scratch)."""
        if not cursor or cursor.get("v") != VERSION or not isinstance(cursor.get("since"), str):
            return None
        try:
            parse_stamp(cursor["since"])
        except ValueError:
            return None
        queried = cursor.get("queried")
        try:
            parse_stamp(queried)
        except ValueError:
            queried = None  # an older cursor: the read falls back to since - lookback
        recent = cursor.get("recent") or {}
        return cls(str(cursor["since"]), str(cursor.get("id") or ""),
                   {str(k): str(v) for k, v in recent.items()} if isinstance(recent, dict)
                   else {}, queried)

    @property
    def since_at(self) -> datetime:
        return parse_stamp(self.since)

    def start(self, lookback: timedelta) -> datetime:
        """Where the next read starts: nothing older can have been missed."""
        if self.queried is None:
            return self.since_at - lookback
        return min(self.since_at, parse_stamp(self.queried) - lookback)

    def settled(self, lookback: timedelta) -> str:
        """Delivered versions older than this are skipped when met again: ``since``'s own
        second can still gain a version, and so can any second after ``queried - lookback``."""
        if self.queried is None:
            return self.since
        return max(self.since, stamp_text(parse_stamp(self.queried) - lookback))

    def complete(self, lookback: timedelta) -> None:
        """A read that ran to the end knows everything older than ``queried - lookback``:
        the cursor moves up to there even when the newest record is older."""
        if self.queried is not None:
            floor = stamp_text(parse_stamp(self.queried) - lookback)
            if self.since < floor:
                self.since, self.last_id = floor, ""

    def delivered_before(self, record_id: str, stamp: str, digest: str | None,
                         boundary: str) -> bool:
        """Whether this version was delivered: its stamp was, and either no second version
        of that second can follow (older than ``boundary``) or its fields are the same."""
        delivered = self.recent.get(record_id)
        if delivered is None or delivered.split(" ", 1)[0] != stamp:
            return False
        return stamp < boundary or (digest is not None and delivered == f"{stamp} {digest}")

    def advance(self, record_id: str, stamp: str, digest: str | None = None) -> None:
        if stamp > self.since or (stamp == self.since and record_id > self.last_id):
            self.since, self.last_id = stamp, record_id
        self.recent.pop(record_id, None)
        # the stamp first: boundary ids order and trim by it
        self.recent[record_id] = stamp if digest is None else f"{stamp} {digest}"

    def trim(self, lookback: timedelta) -> None:
        """Forget boundary ids older than where the next read starts, and the oldest beyond
        the cap."""
        cutoff = stamp_text(self.start(lookback))
        recent = self.recent
        while recent:
            oldest = next(iter(recent))
            if recent[oldest] >= cutoff and len(recent) <= MAX_RECENT:
                break
            del recent[oldest]

    def cursor(self) -> dict[str, Any]:
        return {"v": VERSION, "since": self.since, "id": self.last_id,
                "queried": self.queried, "recent": dict(self.recent)}
