"""In-memory HubSpot objects: records, the indexes that keep paging fast, and CRM search.

CRM search reads an index that lags writes by seconds (vendor docs): with ``index_lag_ms``
set, a change becomes searchable only some time after it is made, between half the lag
and the whole of it (spread by record and change, so later changes can be indexed before
earlier ones). Until then search does not see the record at all (HubSpot would still
serve its previous version; either way the change is not visible). The list and batch
read endpoints read the database, not the index, and see every change at once.
"""

from __future__ import annotations

import fnmatch
import re
import time
import zlib
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sandbox.hubspot.filters import (
    CONVERT,
    MODIFIED,
    SearchError,
    kind_of,
    modified_intervals,
    parse_value,
)
from sandbox.hubspot.schema import SYSTEM_PROPERTIES, PropertyDef, iso_ms

OPERATORS = frozenset({
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
    "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
})
_SYSTEM = SYSTEM_PROPERTIES


@dataclass(slots=True)
class HsRecord:
    id: int
    created_ms: int
    updated_ms: int
    props: dict[str, str | None]
    archived_ms: int | None = None
    corrupt: bool = False  # serve an undecodable modified timestamp (malformed-payload tests)
    created_iso: str = ""  # the served forms, formatted once per change (hot path)
    updated_iso: str = ""
    rev: int = 0  # bumps on every change: the version stamp of the record's cached JSON

    def stamp(self) -> None:
        self.rev += 1
        self.created_iso = iso_ms(self.created_ms)
        self.updated_iso = "not-a-date" if self.corrupt else iso_ms(self.updated_ms)


Predicate = Callable[[HsRecord], bool]


class ObjectStore:
    """One object type (companies or deals) of one HubSpot account."""

    def __init__(self, name: str, properties: Iterable[PropertyDef]) -> None:
        self.name = name
        self.properties: dict[str, PropertyDef] = {p.name: p for p in properties}
        self.records: dict[int, HsRecord] = {}
        self.live_ids: list[int] = []
        self.archived_ids: list[int] = []
        self.by_modified: list[tuple[int, int]] = []  # (updated_ms, id) of live records
        self.version = 0
        self.schema = 0  # bumps when properties are added or removed: cached JSON is stale
        self._totals: dict[tuple[str, int], int] = {}
        self._sorted: dict[tuple[str, int], list[int]] = {}
        self.index_lag_ms = 0  # how late search sees a change (0: at once)
        self.unindexed: dict[int, int] = {}  # id -> epoch ms its latest change is searchable
        self.clock: Callable[[], int] = _now_ms

    # -- values ---------------------------------------------------------------------
    def value(self, rec: HsRecord, name: str) -> str | None:
        if name == "hs_object_id":
            return str(rec.id)
        if name == "hs_lastmodifieddate":
            return rec.updated_iso
        if name == "createdate":
            return rec.created_iso
        return rec.props.get(name)

    def to_json(self, rec: HsRecord, names: Iterable[str]) -> dict[str, Any]:
        known, get = self.properties, rec.props.get
        props = {n: get(n) for n in names if n in known and n not in _SYSTEM}
        rid = str(rec.id)
        created, updated = rec.created_iso, rec.updated_iso
        props["createdate"] = created
        props["hs_lastmodifieddate"] = updated
        props["hs_object_id"] = rid
        out: dict[str, Any] = {
            "id": rid,
            "properties": props,
            "createdAt": created,
            "updatedAt": updated,
            "archived": rec.archived_ms is not None,
        }
        if rec.archived_ms is not None:
            out["archivedAt"] = iso_ms(rec.archived_ms)
        return out

    # -- changes (callers hold the app lock) --------------------------------------------
    def _changed(self) -> None:
        self.version += 1
        self._totals.clear()
        self._sorted.clear()

    def _to_index(self, rec: HsRecord) -> None:
        """The record's latest change reaches the search index later (``index_lag_ms``)."""
        if self.index_lag_ms <= 0:
            return
        spread = zlib.crc32(f"{rec.id}:{rec.rev}".encode()) % 1000 / 1000
        self.unindexed[rec.id] = self.clock() + int(self.index_lag_ms * (0.5 + spread / 2))

    def catch_up(self, ids: Iterable[int] | None = None) -> None:
        """The index catches up with these records (all when None): as if the lag passed."""
        for rid in list(self.unindexed) if ids is None else ids:
            self.unindexed.pop(int(rid), None)
        self._changed()

    def _hidden(self) -> set[int]:
        """Ids whose latest change search cannot see yet."""
        if not self.unindexed:
            return set()
        now = self.clock()
        done = [rid for rid, at in self.unindexed.items() if at <= now]
        for rid in done:
            del self.unindexed[rid]
        return set(self.unindexed)

    def insert(self, rec: HsRecord) -> None:
        rec.stamp()
        self._to_index(rec)
        self.records[rec.id] = rec
        if rec.archived_ms is None:
            insort(self.live_ids, rec.id)
            insort(self.by_modified, (rec.updated_ms, rec.id))
        else:
            insort(self.archived_ids, rec.id)
        self._changed()

    def touch(self, rec: HsRecord, updated_ms: int) -> None:
        if rec.archived_ms is None:
            self._unindex(rec)
            rec.updated_ms = updated_ms
            insort(self.by_modified, (rec.updated_ms, rec.id))
        else:
            rec.updated_ms = updated_ms
        rec.stamp()
        self._to_index(rec)
        self._changed()

    def archive(self, rec: HsRecord, at_ms: int) -> None:
        """Archiving keeps hs_lastmodifieddate as it was (HubSpot does not bump it)."""
        if rec.archived_ms is not None:
            return
        self._unindex(rec)
        del self.live_ids[bisect_left(self.live_ids, rec.id)]
        rec.archived_ms = at_ms
        rec.rev += 1
        insort(self.archived_ids, rec.id)
        self._changed()

    def restore(self, rec: HsRecord, at_ms: int) -> None:
        if rec.archived_ms is None:
            return
        del self.archived_ids[bisect_left(self.archived_ids, rec.id)]
        rec.archived_ms = None
        rec.updated_ms = at_ms
        rec.stamp()
        self._to_index(rec)
        insort(self.live_ids, rec.id)
        insort(self.by_modified, (rec.updated_ms, rec.id))
        self._changed()

    def _unindex(self, rec: HsRecord) -> None:
        pos = bisect_left(self.by_modified, (rec.updated_ms, rec.id))
        if pos < len(self.by_modified) and self.by_modified[pos] == (rec.updated_ms, rec.id):
            del self.by_modified[pos]

    def live(self, record_id: str | int) -> HsRecord | None:
        try:
            rec = self.records.get(int(record_id))
        except (TypeError, ValueError):
            return None
        return rec if rec is not None and rec.archived_ms is None else None

    def page_ids(self, *, archived: bool, after: int, limit: int) -> tuple[list[int], int | None]:
        """List order is by id; ``after`` is the first id of the page (HubSpot's cursor)."""
        ids = self.archived_ids if archived else self.live_ids
        start = bisect_left(ids, after)
        page = ids[start : start + limit]
        nxt = ids[start + limit] if start + limit < len(ids) else None
        return page, nxt

    # -- search ---------------------------------------------------------------------
    def search(
        self, groups: list[dict[str, Any]], sorts: list[dict[str, Any]], offset: int, limit: int
    ) -> tuple[list[int], int]:
        """Ids of one page of matches and the total; the first sort wins, ties by id."""
        compiled = [[self._compile(f) for f in g.get("filters") or []] for g in groups]
        key = repr((groups, sorts[:1]))
        sort_prop = sorts[0].get("propertyName") if sorts else None
        descending = bool(sorts) and str(sorts[0].get("direction", "")).upper() == "DESCENDING"
        if sort_prop is not None and sort_prop not in self.properties:
            raise SearchError(f"Unable to sort by unknown property {sort_prop}")

        hidden = self._hidden()

        def matches(rec: HsRecord) -> bool:
            if hidden and rec.id in hidden:
                return False
            return not compiled or any(all(p(rec) for p in g) for g in compiled)

        if hidden:  # what search sees changes with the clock: nothing is cached
            key = repr((groups, sorts[:1], sorted(hidden)))
        if sort_prop == MODIFIED:
            intervals, pure = modified_intervals(groups)
            pure = pure and not hidden
            # In a pure range query the index positions are exactly the matches.
            ids = self._scan(intervals, descending, (lambda r: True) if pure else matches)
            page = list(islice(ids, offset, offset + limit))
            total = self._totals.get((key, self.version))
            if total is None:
                if pure:
                    total = sum(self._span(lo, hi) for lo, hi in intervals)
                else:
                    total = sum(1 for _ in self._scan(intervals, descending, matches))
                self._totals[(key, self.version)] = total
            return page, total
        ordered = self._sorted.get((key, self.version))
        if ordered is None:
            found = [r for i in self.live_ids if matches(r := self.records[i])]
            if sort_prop is None:
                ordered = [r.id for r in found]
            else:
                sort_key = self._sort_key(sort_prop)
                found.sort(key=lambda r: (sort_key(r), r.id), reverse=descending)
                ordered = [r.id for r in found]
            if len(self._sorted) > 8:
                self._sorted.clear()
            self._sorted[(key, self.version)] = ordered
        return ordered[offset : offset + limit], len(ordered)

    def _span(self, lo: int, hi: int) -> int:
        return bisect_left(self.by_modified, (hi + 1,)) - bisect_left(self.by_modified, (lo,))

    def _scan(
        self, intervals: list[tuple[int, int]], descending: bool, matches: Predicate
    ) -> Iterator[int]:
        index, records = self.by_modified, self.records
        spans = [(bisect_left(index, (lo,)), bisect_left(index, (hi + 1,))) for lo, hi in intervals]
        if descending:
            for i, j in reversed(spans):
                for k in range(j - 1, i - 1, -1):
                    rid = index[k][1]
                    if matches(records[rid]):
                        yield rid
        else:
            for i, j in spans:
                for k in range(i, j):
                    rid = index[k][1]
                    if matches(records[rid]):
                        yield rid

    def _sort_key(self, name: str) -> Callable[[HsRecord], tuple[int, Any]]:
        kind = kind_of(self.properties[name])
        convert = CONVERT[kind]

        def key(rec: HsRecord) -> tuple[int, Any]:
            raw = self.value(rec, name)
            try:
                value = convert(raw) if raw is not None else None
            except ValueError:
                value = None
            return (1, 0) if value is None else (0, value)

        return key

    def _compile(self, flt: dict[str, Any]) -> Predicate:
        name = flt.get("propertyName")
        op = str(flt.get("operator", "EQ")).upper()
        if op not in OPERATORS:
            raise SearchError(f"Unknown filter operator {op}")
        if not isinstance(name, str) or name not in self.properties:
            raise SearchError(f"Unable to find property {name!r} on {self.name}")
        if name == MODIFIED:
            getter: Callable[[HsRecord], Any] = lambda r: r.updated_ms  # noqa: E731 - tiny accessor
            kind = "time"
        elif name == "createdate":
            getter, kind = (lambda r: r.created_ms), "time"
        elif name == "hs_object_id":
            getter, kind = (lambda r: float(r.id)), "num"
        else:
            kind = kind_of(self.properties[name])
            conv = CONVERT[kind]

            def getter(r: HsRecord) -> Any:
                raw = r.props.get(name)
                try:
                    return None if raw is None or raw == "" else conv(raw)
                except ValueError:
                    return None

        if op == "HAS_PROPERTY":
            return lambda r: getter(r) is not None
        if op == "NOT_HAS_PROPERTY":
            return lambda r: getter(r) is None
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).lower()

            def contains(r: HsRecord) -> bool:
                raw = r.props.get(name) or self.value(r, name) or ""
                words = re.split(r"[^\w@.]+", raw.lower())
                return any(fnmatch.fnmatchcase(w, token) for w in words) or token in raw.lower()

            return contains if op == "CONTAINS_TOKEN" else (lambda r: not contains(r))
        conv = CONVERT[kind]
        if op in ("IN", "NOT_IN"):
            values = flt.get("values")
            if not isinstance(values, list) or not values:
                raise SearchError(f"{op} on {name} needs a non-empty 'values' list")
            wanted = {parse_value(conv, v, name) for v in values}
            if op == "IN":
                return lambda r: getter(r) in wanted
            return lambda r: getter(r) not in wanted
        if "value" not in flt:
            raise SearchError(f"{op} on {name} needs a 'value'")
        value = parse_value(conv, flt["value"], name)
        if op == "BETWEEN":
            if "highValue" not in flt:
                raise SearchError(f"BETWEEN on {name} needs a 'highValue'")
            high = parse_value(conv, flt["highValue"], name)
            return lambda r: (v := getter(r)) is not None and value <= v <= high
        compare: dict[str, Callable[[Any], bool]] = {
            "EQ": lambda v: v == value,
            "NEQ": lambda v: v != value,
            "LT": lambda v: v < value,
            "LTE": lambda v: v <= value,
            "GT": lambda v: v > value,
            "GTE": lambda v: v >= value,
        }
        test = compare[op]
        if op == "NEQ":
            return lambda r: test(getter(r))
        return lambda r: (v := getter(r)) is not None and test(v)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
