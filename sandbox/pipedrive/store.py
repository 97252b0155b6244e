"""Pipedrive records kept as pre-encoded JSON with sorted (key, id) indexes for cursor paging."""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

SORT_FIELDS = ("id", "update_time", "add_time")
DELETED_VISIBLE_S = 30 * 86400  # deleted deals are listed (and kept) for 30 days


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> int:
    """Epoch seconds of an RFC 3339 timestamp; ``ValueError`` when it is not one."""
    if "T" not in text or len(text) < 20:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"RFC 3339 timestamp without offset: {text!r}")
    return int(moment.timestamp())


class StoredRecord:
    """One record: the indexed attributes and its JSON body, encoded once per write."""

    __slots__ = ("add_ts", "blob", "deleted_at", "id", "org_id", "owner_id", "status", "update_ts")

    def __init__(self, data: dict[str, Any], add_ts: int, update_ts: int) -> None:
        self.id: int = data["id"]
        self.add_ts = add_ts
        self.update_ts = update_ts
        self.deleted_at: float | None = None
        self.status: str | None = None
        self.owner_id: int | None = None
        self.org_id: int | None = None
        self.blob = b""
        self.set(data)

    def set(self, data: dict[str, Any]) -> None:
        self.status = data.get("status")
        self.owner_id = data.get("owner_id")
        self.org_id = data.get("org_id")
        # orjson leaves a large spare buffer behind its output; a copy is exact-size
        # (about 1 KB per deal instead of 15), which is what keeps 250,000 records small.
        self.blob = bytes(memoryview(orjson.dumps(data)))

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.blob)
        return loaded


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list request's filters, already validated."""

    sort_by: str = "id"
    descending: bool = False
    since: int | None = None  # update_time >= since
    until: int | None = None  # update_time < until
    statuses: frozenset[str] | None = None  # None: every record that is not deleted
    owner_id: int | None = None
    org_id: int | None = None
    ids: frozenset[int] | None = None
    after: tuple[int, int] | None = None  # (sort key, id) of the first record to return
    limit: int = 100


class BadCursorError(ValueError):
    pass


def encode_cursor(sort_by: str, descending: bool, key: int, record_id: int) -> str:
    value: Any = rfc3339(key) if sort_by != "id" else key
    raw = orjson.dumps(
        {"field": sort_by, "fieldValue": value,
         "sortDirection": "desc" if descending else "asc", "id": record_id}
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str, sort_by: str, descending: bool) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = orjson.loads(raw)
        value = data["fieldValue"]
        key = int(value) if data["field"] == "id" else parse_rfc3339(value)
        record_id = int(data["id"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadCursorError("Invalid cursor") from exc
    if data["field"] != sort_by or data["sortDirection"] != ("desc" if descending else "asc"):
        raise BadCursorError("Cursor does not match sort_by / sort_direction")
    return key, record_id


class EntityStore:
    """Records of one entity with an index per sort field."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[int, StoredRecord] = {}
        self.index: dict[str, list[tuple[int, int]]] = {f: [] for f in SORT_FIELDS}
        self.next_id = 1

    def _key(self, rec: StoredRecord, sort_by: str) -> int:
        if sort_by == "id":
            return rec.id
        return rec.update_ts if sort_by == "update_time" else rec.add_ts

    def add(self, rec: StoredRecord) -> None:
        self.records[rec.id] = rec
        self.next_id = max(self.next_id, rec.id + 1)
        for sort_by, index in self.index.items():
            entry = (self._key(rec, sort_by), rec.id)
            if not index or entry > index[-1]:
                index.append(entry)
            else:
                insort(index, entry)

    def retime(self, rec: StoredRecord, update_ts: int) -> None:
        """Move a record in the update_time index after a write."""
        index = self.index["update_time"]
        old = (rec.update_ts, rec.id)
        pos = bisect_left(index, old)
        if pos < len(index) and index[pos] == old:
            del index[pos]
        rec.update_ts = update_ts
        insort(index, (update_ts, rec.id))

    def visible(self, rec: StoredRecord, now: float) -> bool:
        return rec.deleted_at is None or rec.deleted_at >= now - DELETED_VISIBLE_S

    def query(self, q: ListQuery, now: float) -> tuple[list[StoredRecord], tuple[int, int] | None]:
        """Up to ``q.limit`` matching records in order, and the (key, id) of the next one."""
        match = self._matcher(q, now)
        page: list[StoredRecord] = []
        for rec in self._walk(q):
            if not match(rec):
                continue
            if len(page) == q.limit:
                return page, (self._key(rec, q.sort_by), rec.id)
            page.append(rec)
        return page, None

    def _walk(self, q: ListQuery) -> Iterator[StoredRecord]:
        records = self.records
        if q.ids is not None:
            chosen = sorted(
                ((self._key(records[i], q.sort_by), i) for i in q.ids if i in records),
                reverse=q.descending,
            )
            for entry in chosen:
                if q.after is None or (entry <= q.after if q.descending else entry >= q.after):
                    yield records[entry[1]]
            return
        index = self.index[q.sort_by]
        by_update = q.sort_by == "update_time"
        if not q.descending:
            low: tuple[int, int] = (-(2**62), -1)
            if by_update and q.since is not None:
                low = (q.since, -1)
            if q.after is not None:
                low = max(low, q.after)
            for pos in range(bisect_left(index, low), len(index)):
                key, rid = index[pos]
                if by_update and q.until is not None and key >= q.until:
                    return
                yield records[rid]
        else:
            high: tuple[int, int] = (2**62, 2**62)
            if by_update and q.until is not None:
                high = (q.until - 1, 2**62)
            if q.after is not None:
                high = min(high, q.after)
            for pos in range(bisect_right(index, high) - 1, -1, -1):
                key, rid = index[pos]
                if by_update and q.since is not None and key < q.since:
                    return
                yield records[rid]

    def _matcher(self, q: ListQuery, now: float) -> Callable[[StoredRecord], bool]:
        statuses = q.statuses
        want_deleted = statuses is not None and "deleted" in statuses
        live_statuses = None if statuses is None else statuses - {"deleted"}
        oldest_deleted = now - DELETED_VISIBLE_S

        def match(rec: StoredRecord) -> bool:
            if rec.deleted_at is not None:
                if not want_deleted or rec.deleted_at < oldest_deleted:
                    return False
            elif live_statuses is not None and rec.status not in live_statuses:
                return False
            if q.since is not None and rec.update_ts < q.since:
                return False
            if q.until is not None and rec.update_ts >= q.until:
                return False
            if q.owner_id is not None and rec.owner_id != q.owner_id:
                return False
            return q.org_id is None or rec.org_id == q.org_id

        return match
