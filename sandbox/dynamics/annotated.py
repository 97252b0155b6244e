"""Annotated Dataverse pages joined from the rows' wire form: a column's annotations are
encoded once per distinct wire piece (kept across pages for lookups) and put before it."""

from __future__ import annotations

from collections.abc import Callable
from operator import add, itemgetter
from typing import Any

import orjson

from sandbox.dynamics.schema import Attribute
from sandbox.dynamics.wire import KEPT_LOOKUPS, Wire, WireForms

# what the reads know about other rows: (type, options, targets, value) -> the label, and
# (targets, value) -> the table holding the referenced row
Labeller = Callable[[str, dict[int, str], tuple[str, ...], Any], "str | None"]
Locator = Callable[[tuple[str, ...], str], str]


def piece_annotator(attr: Attribute, prefix: bytes, *, label_it: bool, lookup: bool,
                     navigation: bool, lookup_name: bool, formatted_key: str,
                     navigation_key: str, lookup_key: str, labeller: Labeller,
                     locator: Locator
                     ) -> Callable[[bytes], bytes]:
    """A wire piece of one column (``,"prop":value``) -> the piece preceded by the
    annotations the per-row rendering writes before that value, in the same order (a
    piece stands for its value: orjson is deterministic)."""
    formatted_prefix = b"," + orjson.dumps(formatted_key) + b":"
    navigation_piece = (b"," + orjson.dumps(navigation_key) + b":"
                        + orjson.dumps(attr.schema if attr.custom else attr.logical))
    lookup_prefix = b"," + orjson.dumps(lookup_key) + b":"
    skip = len(prefix)

    def annotated(piece: bytes) -> bytes:
        value = orjson.loads(piece[skip:])
        if value is None:
            return piece
        parts = []
        if label_it:
            label = labeller(attr.type, attr.options, attr.targets, value)
            if label is not None:
                parts.append(formatted_prefix + orjson.dumps(label))
        if lookup:
            if navigation:
                parts.append(navigation_piece)
            if lookup_name:
                parts.append(lookup_prefix + orjson.dumps(locator(attr.targets, value)))
        parts.append(piece)
        return b"".join(parts)

    return annotated


def column_annotator(annotated: Callable[[bytes], bytes], kept: dict[bytes, bytes] | None
                     ) -> Callable[[list[bytes]], list[bytes]]:
    """A column's wire pieces -> the annotated pieces, worked out once per distinct piece:
    for one page (choice labels), or across pages in ``kept`` (lookups: their labels
    depend on other rows, see :meth:`WireForms.lookup_memo`)."""

    def annotate(pieces: list[bytes]) -> list[bytes]:
        memo = {} if kept is None else kept
        try:
            return list(map(memo.__getitem__, pieces))
        except KeyError:  # some are not annotated yet
            out = list(map(memo.get, pieces))
        for position, piece in enumerate(pieces):
            if out[position] is None:
                full = memo.get(piece)
                if full is None:
                    full = annotated(piece)
                    if kept is None or len(kept) < KEPT_LOOKUPS:
                        memo[piece] = full
                out[position] = full
        return out  # type: ignore[return-value]  # no None left

    return annotate


def annotated_objects(wires: WireForms, current: list[Wire], select: list[str],
                      annotators: dict[str, Callable[[list[bytes]], list[bytes]]]
                      ) -> list[bytes]:
    """Each row's JSON object for ``select`` with the annotations of ``annotators``'
    columns: each annotated column is a list of annotated pieces, appended to the rows'
    wire forms, from which one pick per row takes the pieces in order to be joined (bytes
    are copied once; whole-list passes rather than a loop per row)."""
    extra = wires.closer_position + 1  # where a row's annotated pieces start
    annotated: list[list[bytes]] = []
    picks = [0]  # the opener: the row's etag
    for prop, position in zip(select, wires.positions(select), strict=True):
        annotate = annotators.get(prop)
        if annotate is None:
            picks.append(position)
            continue
        picks.append(extra + len(annotated))
        annotated.append(annotate(list(map(itemgetter(position), current))))
    picks.append(wires.closer_position)
    pick, join = itemgetter(*picks), b"".join
    rows = map(add, current, zip(*annotated, strict=True)) if annotated else iter(current)
    return list(map(join, map(pick, rows)))
