"""Durations (exact lengths) and periods (calendar months) parse as documented."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.durations import format_duration, parse_duration, parse_period_months


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("15m", timedelta(minutes=15)),
        ("30s", timedelta(seconds=30)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 45 M ", timedelta(minutes=45)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["18mo", "90", "d", "1.5h", "-3d", "soon", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "months"), [("18m", 18), ("18mo", 18), ("2y", 24), (6, 6)])
def test_periods_count_months(text: object, months: int) -> None:
    assert parse_period_months(text) == months


@pytest.mark.parametrize("text", ["90d", "1.5y", "m", True])
def test_bad_periods(text: object) -> None:
    with pytest.raises(ValueError):
        parse_period_months(text)


def test_format_duration_round_trips() -> None:
    for text in ("90d", "12h", "15m", "30s", "2w"):
        assert format_duration(parse_duration(text)) == text
