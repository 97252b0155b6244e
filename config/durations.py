"""Durations (``90d``, ``12h``, ``15m``) and calendar periods in months (``18m``, ``2y``).

Two kinds of span, kept apart on purpose:

* A **duration** is an exact length of time: ``<n><unit>`` with unit ``s`` (seconds),
  ``m`` (minutes), ``h`` (hours), ``d`` (days) or ``w`` (weeks); several parts may be
  joined (``1h30m``). Months are refused here because their length varies: write ``90d``.
* A **period** is a number of calendar months, used only where the config asks for a
  reporting window (``scorecards.period``, ``scorecards.paper_partner.min_history``):
  ``<n>m`` or ``<n>mo`` (months) or ``<n>y`` (years). In a period, ``m`` means months.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_PART = re.compile(r"(\d+)\s*(mo|[smhdw])", re.IGNORECASE)
_DURATION_WHOLE = re.compile(r"^\s*(?:\d+\s*(?:mo|[smhdw])\s*)+$", re.IGNORECASE)
_PERIOD = re.compile(r"^\s*(\d+)\s*(mo|m|y)\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: object) -> timedelta:
    """``'90d'`` -> ``timedelta(days=90)``; raises ``ValueError`` with the accepted forms."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(
            f"a duration needs a unit, e.g. '90d', '12h', '15m' (got {type(text).__name__})"
        )
    if not _DURATION_WHOLE.match(text):
        raise ValueError(
            f"invalid duration '{text}'; use a number and a unit: s, m (minutes), h, d, w"
            " (e.g. '90d', '1h30m')"
        )
    seconds = 0
    for amount, unit in _DURATION_PART.findall(text):
        if unit.lower() == "mo":
            raise ValueError(
                f"invalid duration '{text}': months vary in length; use days (e.g. '90d')"
            )
        seconds += int(amount) * _SECONDS[unit.lower()]
    return timedelta(seconds=seconds)


def parse_period_months(text: object) -> int:
    """``'18m'`` / ``'18mo'`` -> 18, ``'2y'`` -> 24; a bare integer counts months."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a period needs a unit, e.g. '18m' (got {type(text).__name__})")
    match = _PERIOD.match(text)
    if not match:
        raise ValueError(f"invalid period '{text}'; use months or years: '18m', '18mo' or '2y'")
    amount, unit = int(match.group(1)), match.group(2).lower()
    return amount * 12 if unit == "y" else amount


def format_duration(value: timedelta) -> str:
    """The shortest ``90d`` / ``12h`` / ``15m`` / ``30s`` form, for messages and ``plan``."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _SECONDS[unit] == 0:
            return f"{seconds // _SECONDS[unit]}{unit}"
    return f"{seconds}s"
