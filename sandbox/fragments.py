"""Pre-serialised JSON per record and projection, reused until the record changes, so a page
is joined from bytes instead of being rebuilt and re-encoded on every request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import orjson

Entries = dict[Hashable, tuple[Any, bytes]]
# what one cached record costs besides its JSON: dict slot, tuple, bytes header (measured ~)
ENTRY_OVERHEAD = 150
DEFAULT_BUDGET = 256 * 2**20  # keeps 250,000 records per sandbox well under 1 GB in all


def encode(value: Any) -> bytes:
    """orjson's output carries a large spare buffer; the copy is exact-size (memory)."""
    return bytes(memoryview(orjson.dumps(value)))


class FragmentCache:
    """Record JSON per projection (what a query selects), for the most recent projections
    and within a memory budget (beyond it, records are encoded per request as before).

    Each entry remembers the *stamp* of the record version it encodes; a record whose stamp
    differs is encoded again. A stamp must change whenever the record's JSON would: a
    version number, or the row object itself for stores that replace rows on write.
    """

    def __init__(self, *, projections: int = 3, pages: int = 64,
                 budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.projections = projections
        self.pages = pages
        self.budget_bytes = budget_bytes
        self._by_projection: OrderedDict[Hashable, Entries] = OrderedDict()
        self._bytes: dict[Hashable, int] = {}
        # projection -> (data generation, {slice key: fragments}), most recent last
        self._pages: OrderedDict[Hashable, tuple[Hashable, dict[Hashable, list[bytes]]]] = \
            OrderedDict()
        self._overflowed: set[Hashable] = set()  # projections that hit the budget
        self._lock = threading.Lock()
        self.encoded = 0  # records encoded (misses), for tests and benchmarks

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values())

    def entries(self, projection: Hashable) -> Entries:
        with self._lock:
            entries = self._by_projection.get(projection)
            if entries is None:
                entries = self._by_projection[projection] = {}
                self._bytes[projection] = 0
                while len(self._by_projection) > self.projections:
                    self._evict_oldest()
            else:
                self._by_projection.move_to_end(projection)
            return entries

    def _evict_oldest(self) -> None:
        old, _ = self._by_projection.popitem(last=False)
        self._bytes.pop(old, None)
        self._pages.pop(old, None)
        self._overflowed.discard(old)

    def clear(self) -> None:
        with self._lock:
            self._by_projection.clear()
            self._bytes.clear()
            self._pages.clear()
            self._overflowed.clear()

    def _room(self, projection: Hashable, size: int) -> int:
        """Bytes left in the budget once ``size`` more are wanted, dropping older
        projections to make room; negative when it cannot be made."""
        with self._lock:
            left = self.budget_bytes - sum(self._bytes.values())
            while left < size and len(self._by_projection) > 1 and \
                    next(iter(self._by_projection)) != projection:
                self._evict_oldest()
                left = self.budget_bytes - sum(self._bytes.values())
            return left

    def fragments(self, projection: Hashable, records: Iterable[Any],
                  key: Callable[[Any], Hashable], render: Callable[[Any], Any] | None = None,
                  stamp: Callable[[Any], Any] | None = None, *,
                  render_many: Callable[[list[Any]], list[Any]] | None = None) -> list[bytes]:
        """The JSON of each record: cached when the record's ``stamp`` (a version) is the
        one encoded, or, without ``stamp``, when it is the very same object (stores that
        replace a record on every write). ``render(record)`` gives the value to encode, or
        ``render_many(records)`` those of several records at once (faster: one call).

        Lookups, rendering and encoding run as whole-list passes (``map``, comprehensions)
        rather than a Python loop per record: a page served for the first time is as cheap
        as the rendering itself."""
        if render_many is None:
            if render is None:
                raise TypeError("fragments() needs render or render_many")
            one = render

            def render_many(batch: list[Any]) -> list[Any]:
                return list(map(one, batch))

        records = records if isinstance(records, list) else list(records)
        idents = list(map(key, records))
        versions = records if stamp is None else list(map(stamp, records))
        many = render_many

        def encode_many(batch: list[Any]) -> list[bytes]:
            return list(map(encode, many(batch)))

        return self.keyed(projection, idents, versions, records, encode_many,
                          same_object=stamp is None)

    def keyed(self, projection: Hashable, idents: Sequence[Hashable], versions: list[Any],
              records: list[Any], encode_many: Callable[[list[Any]], list[bytes]], *,
              same_object: bool = False) -> list[bytes]:
        """:meth:`fragments` for records given with their keys and versions (the very same
        object when ``same_object``, else equal); ``encode_many`` gives the JSON of those
        records whose cached JSON is missing or stale."""
        entries = self.entries(projection)
        held = list(map(entries.get, idents))
        if held.count(None) == len(held):  # none cached (a first read): all are encoded
            blobs = encode_many(records)
            self.encoded += len(blobs)
            self._store(projection, entries, idents, versions, held, blobs)
            return blobs
        if same_object:
            stale = [i for i, (hit, version) in enumerate(zip(held, versions, strict=True))
                     if hit is None or hit[0] is not version]
        else:
            stale = [i for i, (hit, version) in enumerate(zip(held, versions, strict=True))
                     if hit is None or hit[0] != version]
        if not stale:
            return [hit[1] for hit in held if hit is not None]  # all are held
        if len(stale) == len(records):
            blobs = encode_many(records)
            out = blobs
        else:
            blobs = encode_many([records[i] for i in stale])
            out = [hit[1] if hit is not None else b"" for hit in held]
            for i, blob in zip(stale, blobs, strict=True):
                out[i] = blob
        self.encoded += len(stale)
        self._store(projection, entries, [idents[i] for i in stale],
                    [versions[i] for i in stale], [held[i] for i in stale], blobs)
        return out

    def _store(self, projection: Hashable, entries: Entries, idents: Sequence[Hashable],
               versions: list[Any], old: list[tuple[Any, bytes] | None],
               blobs: list[bytes]) -> None:
        """Keep the new fragments within the budget: all at once when they fit (the usual
        case), else one by one while room lasts, dropping stale entries that do not fit."""
        grown = sum(map(len, blobs)) + ENTRY_OVERHEAD * old.count(None)
        if len(old) > old.count(None):
            grown -= sum(len(hit[1]) for hit in old if hit is not None)
        if grown <= self._room(projection, grown):
            entries.update(zip(idents, zip(versions, blobs, strict=True), strict=True))
            self._charge(projection, grown)
            return
        used = 0
        left = self._room(projection, 0)
        for ident, version, hit, blob in zip(idents, versions, old, blobs, strict=True):
            size = len(blob) + (ENTRY_OVERHEAD if hit is None else -len(hit[1]))
            if size <= left:
                entries[ident] = (version, blob)
                used += size
                left -= size
            else:
                with self._lock:
                    self._overflowed.add(projection)
                if hit is not None:  # a stale entry must not stay
                    entries.pop(ident, None)
        self._charge(projection, used)

    def _charge(self, projection: Hashable, size: int) -> None:
        if size:
            with self._lock:
                if projection in self._bytes:
                    self._bytes[projection] += size

    def page(self, projection: Hashable, generation: Hashable, slice_key: Hashable,
             build: Callable[[], list[bytes]]) -> list[bytes]:
        """A whole page's fragments for one slice of a projection at one data
        ``generation`` (a version that changes whenever any record does): skips checking
        each record again. Only the current generation is kept, whose fragments the
        entries hold anyway, so a page costs a list of references."""
        with self._lock:
            held = self._pages.get(projection)
            if held is not None and held[0] == generation:
                hit = held[1].get(slice_key)
                if hit is not None:
                    return hit
        fragments = build()
        with self._lock:
            if projection not in self._by_projection or projection in self._overflowed:
                return fragments  # evicted, or its pages would hold uncached bytes
            held = self._pages.get(projection)
            if held is None or held[0] != generation:
                held = self._pages[projection] = (generation, {})
            if len(held[1]) < self.pages:
                held[1][slice_key] = fragments
        return fragments


def page_body(head: dict[str, Any], key: str, fragments: list[bytes],
              tail: dict[str, Any] | None = None) -> bytes:
    """``{**head, key: [fragments...], **tail}`` as JSON bytes, keys in that order: one
    join, the page's bytes copied once (a maximum-size page is megabytes)."""
    opening = orjson.dumps(head)[:-1] + (b"," if head else b"") + orjson.dumps(key) + b":["
    closing = b"]," + orjson.dumps(tail)[1:] if tail else b"]}"
    if not fragments:
        return opening + closing
    if len(fragments) == 1:
        return opening + fragments[0] + closing
    return b",".join([opening + fragments[0], *fragments[1:-1], fragments[-1] + closing])
