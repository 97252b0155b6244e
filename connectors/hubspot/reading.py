"""Incremental reads from HubSpot: CRM search on ``hs_lastmodifieddate`` in keyset windows,
the deal-to-company association lookup, and the archived sweep that yields deletes.

Every search page is a fresh query ``hs_lastmodifieddate >= T`` sorted ascending, where T
is the newest timestamp already delivered. Records at T that were delivered are skipped by
id, so a window never approaches the 10,000-result cap and a record modified while we page
only moves later (it is read again, never skipped). When a whole page shares one timestamp,
the records at T are swept in id order (``hs_lastmodifieddate = T AND hs_object_id > last``,
sorted by id), then the windows go on with ``> T``: ties never need offsets, so never the cap.

Search reads an index that lags writes by seconds, so a query can miss a record changed
shortly before it was sent, and only such a record: one changed earlier is in the index and
inside the window. The next read therefore starts at ``min(T, S - index lag)``, where S is
when the read's first query was sent (the earlier of our clock and the server's ``Date``,
so a clock skew does not move it later) and the lag allowance also covers the skew. Right
after a large write-back, the echoes of our writes are read once and not paged through
again once the lag has passed. (They cannot be skipped on the strength of the ``updatedAt``
the batch update returned: that stamp also hides a person's edit made between our read and
our write, and HubSpot has no conditional update to tell the two apart.)

Cursor (JSON)::

    {"modified_ms": T,                  # newest delivered hs_lastmodifieddate
     "searched_ms": S,                  # when the read's first search was sent (epoch ms)
     "recent": {"<id>": ms, ...},       # delivered ids the next read can meet again (bounded)
     "archived_ms": A, "archived_ids": [...],   # newest archivedAt seen by the sweep
     "full_at_ms": F}                   # when the last full read started

Deals are read in full again once ``full_every_ms`` has passed since F: moving a deal to
another company changes none of its properties, so no modified date shows it. A full read
cut short goes on as an incremental one (its pages ascend in modified date, so nothing
older is left), only without the tombstones a completed full read gives.

A cursor without ``searched_ms`` (written before it existed) starts at ``T - index lag``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from connectors.base import Cursor, JSONValue, Page, Record, SkippedRecord
from connectors.hubspot.api import HubSpotApi

MODIFIED = "hs_lastmodifieddate"
OBJECT_ID = "hs_object_id"
ASSOCIATED_COMPANY = "associatedcompanyid"
ASSOCIATION_BATCH_MAX = 1000
ARCHIVE_PAGE_MAX = 100
RECENT_MAX = 1000
PRIMARY_DEAL_TO_COMPANY = 5


def parse_time(value: Any) -> datetime | None:
    """HubSpot datetimes: ISO 8601 in results (epoch ms accepted too)."""
    if value.__class__ is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads the trailing Z
    except ValueError:
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(slots=True)
class ReadPosition:
    """Where a read stands; turned into a cursor after each page."""

    modified_ms: int = 0
    searched_ms: int | None = None
    recent: dict[str, int] = field(default_factory=dict)
    archived_ms: int = -1
    archived_ids: list[str] = field(default_factory=list)
    full_at_ms: int | None = None  # when the last full read started (epoch ms)

    @classmethod
    def from_cursor(cls, cursor: Cursor | None) -> ReadPosition:
        if not cursor:
            return cls()
        searched = cursor.get("searched_ms")
        return cls(
            modified_ms=int(cursor.get("modified_ms", 0)),
            searched_ms=int(searched) if searched is not None else None,
            recent={str(k): int(v) for k, v in dict(cursor.get("recent") or {}).items()},
            archived_ms=int(cursor.get("archived_ms", -1)),
            archived_ids=[str(i) for i in cursor.get("archived_ids") or []],
            full_at_ms=int(full_at) if (full_at := cursor.get("full_at_ms")) is not None
            else None,
        )

    def cursor(self) -> dict[str, JSONValue]:
        return {"modified_ms": self.modified_ms, "searched_ms": self.searched_ms,
                "recent": dict(self.recent),
                "archived_ms": self.archived_ms, "archived_ids": list(self.archived_ids),
                "full_at_ms": self.full_at_ms}

    def since(self, index_lag_ms: int) -> int:
        """Where the next read starts: nothing older can have been missed."""
        searched = self.modified_ms if self.searched_ms is None else self.searched_ms
        return max(0, min(self.modified_ms, searched - index_lag_ms))

    def delivered(self, record_id: str, modified_ms: int) -> None:
        self.recent[record_id] = modified_ms
        if modified_ms > self.modified_ms:
            self.modified_ms = modified_ms

    def prune(self, index_lag_ms: int) -> None:
        floor = self.since(index_lag_ms)
        kept = {k: v for k, v in self.recent.items() if v >= floor}
        if len(kept) > RECENT_MAX:
            kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-RECENT_MAX:])
        self.recent = kept


class HubSpotReader:
    """One read of one object type; yields pages, marks the last one complete."""

    def __init__(
        self,
        *,
        api: HubSpotApi,
        object_type: str,
        properties: Sequence[str],
        with_company: bool,
        page_size: int,
        index_lag_ms: int,
        full_every_ms: int | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.full_every_ms = full_every_ms
        self.object_type = object_type
        self.properties = list(dict.fromkeys([*properties, MODIFIED, "createdate"]))
        self.with_company = with_company
        self.page_size = page_size
        self.index_lag_ms = index_lag_ms
        self.wall_clock = wall_clock

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        position = ReadPosition.from_cursor(cursor)
        now_ms = int(self.wall_clock() * 1000)
        full = cursor is None or (self.full_every_ms is not None and (
            position.full_at_ms is None or now_ms - position.full_at_ms >= self.full_every_ms))
        if full:  # everything again, as a first read: what no modified date shows is seen
            position = ReadPosition(full_at_ms=now_ms)
        pages = self._changed(position, full)
        if self.with_company:
            pages = self._with_companies(pages)
        previous: Page | None = None
        for page in _chain(pages, self._archived(position, full)):
            if previous is not None:
                yield previous
            previous = page
        if previous is None:
            previous = Page(records=(), cursor=position.cursor(), full_refresh=full)
        yield replace(previous, complete=True)

    # -- search windows ---------------------------------------------------------------------
    def _changed(self, position: ReadPosition, full: bool) -> Iterator[Page]:
        start = 0 if full else position.since(self.index_lag_ms)
        first = True
        known = dict(position.recent)  # id -> ms already delivered
        reported: set[str] = set()
        offset = 0
        strictly_after = False  # every record at ``start`` has been read (after a tie sweep)
        tie_after: int | None = None  # sweeping the records at ``start`` by id, past this one
        while True:
            request = self._window_request(start, strictly_after, tie_after, offset)
            sent_ms = int(self.wall_clock() * 1000)
            answer = self.api.search(self.object_type, request)
            if first:  # anything changed before this, and not found by the read, is older
                first = False
                served = self.api.server_ms
                position.searched_ms = sent_ms if served is None else min(sent_ms, served)
            results = answer.get("results") or []
            records: list[Record] = []
            skipped: list[SkippedRecord] = []
            newest = start
            all_tied = True
            for row in results:
                decoded = self._decode(row)
                if decoded.__class__ is SkippedRecord:
                    all_tied = False
                    if decoded.id not in reported:
                        reported.add(str(decoded.id))
                        skipped.append(decoded)
                    continue
                record: Record = decoded  # type: ignore[assignment]  # class checked above
                ms = to_ms(record.modified_at)
                if ms > newest:
                    newest = ms
                if ms != start:
                    all_tied = False
                if known.get(record.id) == ms:
                    continue
                known[record.id] = ms
                position.delivered(record.id, ms)
                records.append(record)
            more = bool((answer.get("paging") or {}).get("next"))
            finished = not more or not results
            if tie_after is not None:  # id order within the tied timestamp
                ids = [int(r["id"]) for r in results if str(r.get("id", "")).isdigit()]
                if more and ids:
                    tie_after = max(ids)
                else:  # the tie is swept: go on with what comes strictly after it
                    tie_after, strictly_after, finished = None, True, False
            elif newest > start:
                start, offset, strictly_after = newest, 0, False
                known = {k: v for k, v in known.items() if v >= start}
            elif more and all_tied and results:
                # A whole page at one timestamp: paging on with offsets could run into the
                # 10,000-result cap and relies on an order HubSpot does not promise for ties.
                tie_after = 0
            else:
                offset += len(results)
            position.prune(self.index_lag_ms)
            if records or skipped or finished:
                yield Page(records=records, cursor=position.cursor(), skipped=skipped,
                           full_refresh=full)
            if finished:
                return

    def _window_request(self, start: int, strictly_after: bool, tie_after: int | None,
                        offset: int) -> dict[str, Any]:
        """One keyset query: records modified from ``start`` on, or the records tied at
        ``start`` in id order (HubSpot search sorts on one property only)."""
        if tie_after is not None:
            filters = [{"propertyName": MODIFIED, "operator": "EQ", "value": str(start)},
                       {"propertyName": OBJECT_ID, "operator": "GT", "value": str(tie_after)}]
            sort = OBJECT_ID
        else:
            filters = [{"propertyName": MODIFIED, "operator": "GT" if strictly_after else "GTE",
                        "value": str(start)}]
            sort = MODIFIED
        request: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.page_size,
        }
        if offset and tie_after is None:
            request["after"] = str(offset)
        return request

    def _decode(self, row: Any) -> Record | SkippedRecord:
        if not isinstance(row, dict) or not row.get("id"):
            return SkippedRecord(id=None, reason="search result without an id", payload=row)
        record_id = str(row["id"])
        props = row.get("properties")
        if not isinstance(props, dict):
            return SkippedRecord(id=record_id, reason="record has no properties", payload=row)
        modified = parse_time(props.get(MODIFIED)) or parse_time(row.get("updatedAt"))
        if modified is None:
            return SkippedRecord(
                id=record_id,
                reason=f"{MODIFIED} is not a datetime: {props.get(MODIFIED)!r}",
                payload=row,
            )
        return Record(id=record_id, modified_at=modified, fields=props)

    # -- deal -> company ----------------------------------------------------------------------
    def _with_companies(self, pages: Iterator[Page]) -> Iterator[Page]:
        """Association batch reads of exactly 1,000 deal ids (the last one: what is left).

        Search pages hold up to 200 deals, and a keyset window repeats the record it starts
        at, so pages rarely add up to 1,000: a batch takes ids across a page boundary, and a
        page is held back until all of its deals are looked up. At most 1,000 looked-up
        deals plus one page wait at any time."""
        waiting: deque[Page] = deque()
        held: Counter[str] = Counter()  # deal id -> waiting pages that hold it
        pending: dict[str, None] = {}  # ids to look up, in order, each once
        primary: dict[str, str | None] = {}
        for page in pages:
            waiting.append(page)
            for record in page.records:
                held[record.id] += 1
                if record.id not in primary:
                    pending[record.id] = None
            while len(pending) >= ASSOCIATION_BATCH_MAX:
                batch = list(islice(pending, ASSOCIATION_BATCH_MAX))
                for record_id in batch:
                    del pending[record_id]
                self._lookup(batch, primary)
            while waiting and not any(r.id in pending for r in waiting[0].records):
                yield self._attach(waiting.popleft(), primary, held)
        if pending:
            self._lookup(list(pending), primary)
        while waiting:
            yield self._attach(waiting.popleft(), primary, held)

    def _lookup(self, ids: list[str], primary: dict[str, str | None]) -> None:
        answer = self.api.deal_companies(ids)
        found: dict[str, str | None] = dict.fromkeys(ids)
        for row in answer.get("results") or []:
            source = str((row.get("from") or {}).get("id", ""))
            chosen = _primary_company(row.get("to") or [])
            if source in found and chosen:
                found[source] = chosen
        primary.update(found)

    @staticmethod
    def _attach(page: Page, primary: dict[str, str | None], held: Counter[str]) -> Page:
        for record in page.records:
            fields = record.fields
            if isinstance(fields, dict):
                fields[ASSOCIATED_COMPANY] = primary.get(record.id)
            held[record.id] -= 1
            if held[record.id] <= 0:  # a later page with this deal looks it up again
                del held[record.id]
                primary.pop(record.id, None)
        return page

    # -- archived sweep -------------------------------------------------------------------------
    def _archived(self, position: ReadPosition, full: bool) -> Iterator[Page]:
        """All archived records are listed (the list cannot filter); those archived since
        the last sweep become deleted records. A full refresh only sets the watermark."""
        seen_ms, seen_ids = position.archived_ms, set(position.archived_ids)
        newest_ms, newest_ids = seen_ms, set(seen_ids)
        after: str | None = None
        while True:
            answer = self.api.list_archived(self.object_type, after=after,
                                            limit=ARCHIVE_PAGE_MAX, properties=["hs_object_id"])
            records: list[Record] = []
            skipped: list[SkippedRecord] = []
            for row in answer.get("results") or []:
                record_id = str(row.get("id", ""))
                archived_at = parse_time(row.get("archivedAt"))
                if archived_at is None:
                    skipped.append(SkippedRecord(id=record_id or None, payload=row,
                                                 reason="archived record without archivedAt"))
                    continue
                ms = to_ms(archived_at)
                if ms > newest_ms:
                    newest_ms, newest_ids = ms, {record_id}
                elif ms == newest_ms:
                    newest_ids.add(record_id)
                if full or ms < seen_ms or (ms == seen_ms and record_id in seen_ids):
                    continue
                records.append(Record(id=record_id, modified_at=archived_at, deleted=True,
                                      fields=dict(row.get("properties") or {})))
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:  # the watermark moves only once the whole sweep is done
                position.archived_ms, position.archived_ids = newest_ms, sorted(newest_ids)
            if records or skipped or not after:
                yield Page(records=records, cursor=position.cursor(), skipped=skipped,
                           full_refresh=full)
            if not after:
                return


def _primary_company(targets: Sequence[Mapping[str, Any]]) -> str | None:
    """The company with the Primary association (type 5), else the first one."""
    for target in targets:
        types = target.get("associationTypes") or []
        if any(t.get("typeId") == PRIMARY_DEAL_TO_COMPANY for t in types):
            return str(target.get("toObjectId"))
    return str(targets[0].get("toObjectId")) if targets else None


def _chain(*iterators: Iterator[Page]) -> Iterator[Page]:
    for iterator in iterators:
        yield from iterator
