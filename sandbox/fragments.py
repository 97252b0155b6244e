"""Pre-serialised JSON per record and projection, reused until the record changes, so a page
is joined from bytes instead of being rebuilt and re-encoded on every request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import orjson

Entries = dict[Hashable, tuple[Any, bytes]]


def encode(value: Any) -> bytes:
    """orjson's output carries a large spare buffer; the copy is exact-size (memory)."""
    return bytes(memoryview(orjson.dumps(value)))


class FragmentCache:
    """Record JSON per projection (what a query selects), the few most recent projections.

    Each entry remembers the *stamp* of the record version it encodes; a record whose stamp
    differs is encoded again. A stamp must change whenever the record's JSON would: a
    version number, or the row object itself for stores that replace rows on write.
    """

    def __init__(self, *, projections: int = 3, pages: int = 64) -> None:
        self.projections = projections
        self.pages = pages
        self._by_projection: OrderedDict[Hashable, Entries] = OrderedDict()
        self._pages: OrderedDict[Hashable, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # records encoded (misses), for tests and benchmarks

    def entries(self, projection: Hashable) -> Entries:
        with self._lock:
            entries = self._by_projection.get(projection)
            if entries is None:
                entries = self._by_projection[projection] = {}
                while len(self._by_projection) > self.projections:
                    self._by_projection.popitem(last=False)
            else:
                self._by_projection.move_to_end(projection)
            return entries

    def clear(self) -> None:
        with self._lock:
            self._by_projection.clear()
            self._pages.clear()

    def page(self, key: Hashable, build: Callable[[], list[bytes]]) -> list[bytes]:
        """A whole page's fragments, for a key that names exactly its records' versions
        (e.g. a query slice at one data version): skips checking each record again. Only
        references are kept, so a page costs a list, not its bytes."""
        with self._lock:
            hit = self._pages.get(key)
            if hit is not None:
                self._pages.move_to_end(key)
                return hit
        fragments = build()
        with self._lock:
            self._pages[key] = fragments
            while len(self._pages) > self.pages:
                self._pages.popitem(last=False)
        return fragments

    def fragments(self, projection: Hashable, records: Iterable[Any],
                  key: Callable[[Any], Hashable], render: Callable[[Any], Any],
                  stamp: Callable[[Any], Any] | None = None) -> list[bytes]:
        """The JSON of each record: cached when the record's ``stamp`` (a version) is the
        one encoded, or, without ``stamp``, when it is the very same object (stores that
        replace a record on every write). ``render(record)`` gives the value to encode."""
        entries = self.entries(projection)
        out: list[bytes] = []
        append = out.append
        misses = 0
        for record in records:
            ident = key(record)
            version = record if stamp is None else stamp(record)
            hit = entries.get(ident)
            if hit is not None and (hit[0] is version if stamp is None else hit[0] == version):
                append(hit[1])
                continue
            blob = encode(render(record))
            entries[ident] = (version, blob)
            append(blob)
            misses += 1
        self.encoded += misses
        return out


def json_array(fragments: list[bytes]) -> bytes:
    return b"[" + b",".join(fragments) + b"]"


def page_body(head: dict[str, Any], key: str, fragments: list[bytes],
              tail: dict[str, Any] | None = None) -> bytes:
    """``{**head, key: [fragments...], **tail}`` as JSON bytes, keys in that order."""
    parts = [orjson.dumps(head)[:-1]]
    if head:
        parts.append(b",")
    parts += [orjson.dumps(key), b":", json_array(fragments)]
    if tail:
        parts += [b",", orjson.dumps(tail)[1:]]
    else:
        parts.append(b"}")
    return b"".join(parts)
