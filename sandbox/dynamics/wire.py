"""Dataverse rows kept in their wire form, encoded when written, so a page without
annotations is joined from bytes: no row is rendered or encoded while a page is served."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from sandbox.dynamics.schema import TableDef

# One row: (``{"@odata.etag":...``, one ``,"prop":value`` per column in schema order,
# ``}``). A projection picks the opener, its columns and the closer: the row's JSON object.
Wire = tuple[bytes, ...]
CLOSER = b"}"
ETAG_OPENER = b'{"@odata.etag":'
SHARED_PER_COLUMN = 2048
KEPT_LOOKUPS = 65_536  # annotated lookup pieces kept per column (~250 bytes each)


@dataclass(frozen=True, slots=True)
class _KeptLookups:
    position: int  # of the column in a row's wire form
    prefix: bytes  # ``,"prop":``
    annotate: Callable[[bytes], bytes]
    pieces: dict[bytes, bytes]


class WireForms:
    """The wire form of every row of one table, for the columns of its current schema.

    Rows are encoded when they are written; a schema change or a raw edit (``pokes``)
    drops them all and they are encoded again as pages need them. Callers hold the app's
    lock."""

    def __init__(self) -> None:
        self.by_id: dict[str, Wire] = {}
        self.columns: tuple[str, ...] = ()
        self._pokes = -1
        self._index: dict[str, int] = {}
        self._prefixes: tuple[bytes, ...] = ()
        self._nulls: tuple[bytes, ...] = ()  # ``,"prop":null``: shared by every row
        # a column's first values, shared by the rows holding them (country, owner, state):
        # less memory, and pages touch fewer distinct objects (the cost of joining them)
        self._shared: tuple[dict[tuple[type, Any], bytes], ...] = ()
        # (column, annotations asked) -> its lookups' annotated pieces: see lookup_memo
        self._lookups: dict[tuple[Any, ...], _KeptLookups] = {}

    def sync(self, definition: TableDef, pokes: int) -> bool:
        """Follow the schema and raw edits; whether the forms started afresh."""
        columns = tuple(a.prop for a in definition.attributes.values())
        if columns == self.columns and pokes == self._pokes:
            return False
        self.by_id.clear()
        self.columns, self._pokes = columns, pokes
        self._index = {prop: i + 1 for i, prop in enumerate(columns)}
        self._prefixes = tuple(b"," + orjson.dumps(prop) + b":" for prop in columns)
        self._nulls = tuple(prefix + b"null" for prefix in self._prefixes)
        self._shared = tuple({} for _ in columns)
        self._lookups.clear()
        return True

    def lookup_memo(self, key: tuple[Any, ...], prop: str,
                    annotate: Callable[[bytes], bytes]) -> dict[bytes, bytes]:
        """Lookup column ``prop``'s wire pieces -> the same pieces preceded by their
        annotations, for one set of annotations asked (``key`` names both), kept across
        pages. Once a page asked for it, every write keeps it current: a written row's
        lookups are annotated (``written``), and a written referenced row's lookups again
        (``referenced_changed``). ``annotate`` is how; kept up to a bounded size (memory)."""
        kept = self._lookups.get(key)
        if kept is None:
            kept = self._lookups[key] = _KeptLookups(
                self._index[prop], self._prefixes[self._index[prop] - 1], annotate, {})
        return kept.pieces

    def referenced_changed(self, record_id: str) -> None:
        """A row was inserted, updated or deleted: lookups to it are annotated again (ids
        are unique across tables, so every kept column may hold it)."""
        if self._lookups:
            value = orjson.dumps(record_id)
            for kept in self._lookups.values():
                piece = kept.prefix + value
                if piece in kept.pieces:
                    kept.pieces[piece] = kept.annotate(piece)

    def forget_lookups(self) -> None:
        for kept in self._lookups.values():
            kept.pieces.clear()

    def encode(self, row: dict[str, Any]) -> Wire:
        get, dumps = row.get, orjson.dumps
        parts = [ETAG_OPENER + dumps(f'W/"{row["versionnumber"]}"')]
        for prop, prefix, null, shared in zip(self.columns, self._prefixes, self._nulls,
                                              self._shared, strict=True):
            value = get(prop)
            if value is None:
                parts.append(null)
                continue
            kind = type(value)
            if kind is not str and kind is not int and kind is not bool:
                parts.append(prefix + dumps(value))
                continue
            piece = shared.get((kind, value))
            if piece is None:
                piece = prefix + dumps(value)
                if len(shared) < SHARED_PER_COLUMN:
                    shared[(kind, value)] = piece
            parts.append(piece)
        parts.append(CLOSER)
        return tuple(parts)

    def written(self, record_id: str, row: dict[str, Any]) -> None:
        """Encode a row that was just inserted or updated; one orjson cannot encode is left
        to the read, which reports it as any other rendering would."""
        try:
            wire = self.by_id[record_id] = self.encode(row)
        except orjson.JSONEncodeError:
            self.by_id.pop(record_id, None)
            return
        for kept in self._lookups.values():
            piece = wire[kept.position]
            if piece not in kept.pieces and len(kept.pieces) < KEPT_LOOKUPS:
                kept.pieces[piece] = kept.annotate(piece)

    def forget(self, record_ids: Iterable[str]) -> None:
        for record_id in record_ids:
            self.by_id.pop(record_id, None)

    def projectable(self, select: list[str]) -> bool:
        """Whether ``select`` is a plain list of distinct current columns."""
        index = self._index
        return len(set(select)) == len(select) and all(prop in index for prop in select)

    def current(self, rows: dict[str, dict[str, Any]], ids: list[str]) -> list[Wire]:
        """The wire form of each row of ``ids``; a new object whenever the row changed."""
        by_id = self.by_id
        wires = list(map(by_id.get, ids))
        if None in wires:  # written outside the row API, or before a schema change
            for position, record_id in enumerate(ids):
                if wires[position] is None:
                    wires[position] = by_id[record_id] = self.encode(rows[record_id])
        return wires  # type: ignore[return-value]  # no None left

    def positions(self, select: list[str]) -> list[int]:
        """Where each column of ``select`` sits in a row's wire form."""
        return [self._index[prop] for prop in select]

    def prefixes(self, select: list[str]) -> list[bytes]:
        """Each column's ``,"prop":`` as its wire pieces start."""
        return [self._prefixes[self._index[prop] - 1] for prop in select]

    @property
    def closer_position(self) -> int:
        return len(self.columns) + 1

    def projector(self, select: list[str]) -> Callable[[list[Wire]], list[bytes]]:
        """Wire forms -> each row's JSON object projected to ``select``: what rendering
        the row (etag, then the selected columns, absent ones null) and encoding gives."""
        index = self._index
        pick = itemgetter(0, *(index[prop] for prop in select), len(self.columns) + 1)
        join = b"".join

        def project(wires: list[Wire]) -> list[bytes]:
            return list(map(join, map(pick, wires)))

        return project
