"""Search filters of the HubSpot sandbox: value kinds, conversions, and the
``hs_lastmodifieddate`` ranges a query allows (answered from the modified-date index)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.hubspot.schema import PropertyDef, to_ms

MODIFIED = "hs_lastmodifieddate"
NEVER = 1 << 62


class SearchError(Exception):
    """A search request HubSpot answers with 400 VALIDATION_ERROR."""


def kind_of(prop: PropertyDef) -> str:
    if prop.type == "number":
        return "num"
    if prop.type in ("date", "datetime"):
        return "time"
    return "str"


def _num(raw: Any) -> float:
    return float(raw)


def _time(raw: Any) -> int:
    ms = to_ms(raw)
    if ms is None:
        raise ValueError(raw)
    return ms


def _str(raw: Any) -> str:
    return str(raw).lower()


CONVERT: dict[str, Callable[[Any], Any]] = {"num": _num, "time": _time, "str": _str}


def parse_value(conv: Callable[[Any], Any], raw: Any, name: str) -> Any:
    try:
        return conv(raw)
    except (TypeError, ValueError):
        raise SearchError(f"{raw!r} is not a valid value for {name}") from None


def modified_intervals(groups: list[dict[str, Any]]) -> tuple[list[tuple[int, int]], bool]:
    """Union of the hs_lastmodifieddate ranges the groups allow, and whether the groups
    filter on nothing else (so the total is a count of index positions)."""
    spans: list[tuple[int, int]] = []
    pure = bool(groups)
    for group in groups or [{}]:
        lo, hi = -NEVER, NEVER
        for flt in group.get("filters") or []:
            if flt.get("propertyName") != MODIFIED:
                pure = False
                continue
            op = str(flt.get("operator", "")).upper()
            value = to_ms(flt.get("value"))
            if value is None:
                pure = False
                continue
            if op == "GT":
                lo = max(lo, value + 1)
            elif op == "GTE":
                lo = max(lo, value)
            elif op == "LT":
                hi = min(hi, value - 1)
            elif op == "LTE":
                hi = min(hi, value)
            elif op == "EQ":
                lo, hi = max(lo, value), min(hi, value)
            elif op == "BETWEEN":
                high = to_ms(flt.get("highValue"))
                lo = max(lo, value)
                hi = min(hi, high if high is not None else NEVER)
            else:
                pure = False
        if not (group.get("filters") or []):
            pure = False
        if lo <= hi:
            spans.append((lo, hi))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged, pure
