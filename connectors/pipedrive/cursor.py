"""The Pipedrive read position: per feed (live records, deleted deals) the ``update_time``
to ask ``updated_since`` from, and the records already delivered at the boundary.

Pipedrive stamps ``update_time`` to the second and filters ``updated_since`` with >=. A
record read in second T can change again within T, so "already delivered at T" is only
trusted when the response that delivered it was produced at least a full second after T
(``Date`` header): such a record cannot take that timestamp again. Records delivered in
their own second are simply delivered again next time (at-least-once, never a miss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.base import Cursor

MAX_RECENT = 5000  # more boundary ids than this only costs re-deliveries, never a miss


@dataclass(slots=True)
class Feed:
    since: int | None = None
    recent: dict[int, int] = field(default_factory=dict)  # id -> update_time (epoch s)
    max_seen: int | None = None

    def query_since(self, lookback_s: int) -> int | None:
        return None if self.since is None else self.since - lookback_s

    def already_delivered(self, record_id: int, update_ts: int) -> bool:
        return self.recent.get(record_id) == update_ts

    def delivered(self, record_id: int, update_ts: int, server_time: int | None) -> None:
        if self.max_seen is None or update_ts > self.max_seen:
            self.max_seen = update_ts
        if server_time is not None and update_ts < server_time - 1:
            self.recent[record_id] = update_ts
        else:
            self.recent.pop(record_id, None)

    def prune(self, lookback_s: int) -> None:
        """Forget boundary entries that fell out of the lookback window (keeps memory flat
        however long the read)."""
        newest = self.position()
        if newest is None or len(self.recent) <= MAX_RECENT // 10:
            return
        oldest = newest - lookback_s
        self.recent = {rid: ts for rid, ts in self.recent.items() if ts >= oldest}

    def position(self, floor: int | None = None) -> int | None:
        """The ``since`` valid once everything delivered so far is stored; ``floor`` (the
        server time a complete read started, minus a second) may move it further."""
        candidates = [t for t in (self.since, self.max_seen, floor) if t is not None]
        return max(candidates) if candidates else None

    def to_json(self, since: int | None, lookback_s: int) -> dict[str, Any]:
        oldest = None if since is None else since - lookback_s
        kept = sorted(
            ((rid, ts) for rid, ts in self.recent.items() if oldest is None or ts >= oldest),
            key=lambda item: item[1],
        )[-MAX_RECENT:]
        return {"since": since, "recent": [[rid, ts] for rid, ts in kept]}

    @classmethod
    def from_json(cls, data: Any) -> Feed:
        if not isinstance(data, dict):
            return cls()
        since = data.get("since")
        recent = {int(rid): int(ts) for rid, ts in data.get("recent") or ()}
        return cls(since=int(since) if since is not None else None, recent=recent)


@dataclass(slots=True)
class ReadPosition:
    """Everything a Pipedrive cursor holds."""

    live: Feed
    deleted: Feed | None  # deals only
    full_at: float | None  # epoch seconds of the last complete full read
    full_pending: bool = False  # a full read started and has not completed
    known_ids: list[int] | None = None  # every organization id, while they fit one page

    @classmethod
    def parse(cls, cursor: Cursor | None, *, with_deleted: bool) -> ReadPosition | None:
        if cursor is None:
            return None
        return cls(
            live=Feed.from_json(cursor.get("live")),
            deleted=Feed.from_json(cursor.get("deleted")) if with_deleted else None,
            full_at=cursor.get("full_at"),
            full_pending=bool(cursor.get("full_pending")),
            known_ids=cursor.get("known_ids"),
        )


class IdTally:
    """Ids met during a complete listing: which of the ``known`` ones are still there, and
    all of them as long as they number at most ``cap`` (memory stays bounded)."""

    def __init__(self, known: list[int] | None, cap: int) -> None:
        self.known = set(known) if known is not None else set()
        self.found: set[int] = set()
        self.everything: set[int] | None = set()
        self.cap = cap

    def add(self, record_id: int) -> None:
        if record_id in self.known:
            self.found.add(record_id)
        if self.everything is not None:
            self.everything.add(record_id)
            if len(self.everything) > self.cap:
                self.everything = None

    def gone(self) -> list[int]:
        return sorted(self.known - self.found)

    def to_json(self) -> list[int] | None:
        return sorted(self.everything) if self.everything is not None else None


def dump(
    *, live: Feed, live_since: int | None, deleted: Feed | None, deleted_since: int | None,
    full_at: float | None, full_pending: bool, lookback_s: int,
    known_ids: list[int] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"v": 1, "live": live.to_json(live_since, lookback_s),
                           "full_at": full_at, "full_pending": full_pending,
                           "known_ids": known_ids}
    if deleted is not None:
        out["deleted"] = deleted.to_json(deleted_since, lookback_s)
    return out
