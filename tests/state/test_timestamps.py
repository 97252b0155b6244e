"""Timestamps come back from SQLite timezone-aware and in UTC, whatever text holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from state.types import UtcDateTime, utc_from_sqlite

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-08 02:35:12.123456", datetime(2026, 12, 8, 2, 35, 12, 123456, tzinfo=UTC)),
    ("2026-12-08 02:35:12", datetime(2026, 12, 8, 2, 35, 12, tzinfo=UTC)),
    ("2026-12-08T02:35:12Z", datetime(2026, 12, 8, 2, 35, 12, tzinfo=UTC)),
    ("2026-12-08 04:35:12+02:00", datetime(2026, 12, 8, 2, 35, 12, tzinfo=UTC)),
    ("2026-12-08 04:35:12.000001+02:00", datetime(2026, 12, 8, 2, 35, 12, 1, tzinfo=UTC)),
    ("2026-12-08", datetime(2026, 12, 8, tzinfo=UTC)),
    (None, None),
])
def test_stored_text_reads_as_an_aware_utc_value(text: str | None,
                                                 expected: datetime | None) -> None:
    value = utc_from_sqlite(text)
    assert value == expected
    if value is not None:
        assert value.utcoffset() == timedelta(0)


def test_text_that_is_no_timestamp_fails_loudly() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        utc_from_sqlite("last tuesday")


def test_values_round_trip_through_sqlite() -> None:
    engine = sa.create_engine("sqlite://")
    metadata = sa.MetaData()
    stamps = sa.Table("stamps", metadata, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("at", UtcDateTime()))
    metadata.create_all(engine)
    aware = datetime(2026, 12, 8, 4, 35, 12, 250, tzinfo=PLUS_TWO)
    naive = datetime(2026, 12, 8, 2, 35, 12)  # taken as UTC
    with engine.begin() as conn:
        conn.execute(stamps.insert(), [{"id": 1, "at": aware}, {"id": 2, "at": naive},
                                       {"id": 3, "at": None}])
        conn.exec_driver_sql(
            "INSERT INTO stamps (id, at) VALUES (4, '2026-12-08T05:35:12+03:00')")
        stored: dict[int, str] = dict(conn.exec_driver_sql("SELECT id, at FROM stamps").all())
        query = sa.select(stamps.c.id, stamps.c.at)
        read: dict[int, datetime | None] = dict(conn.execute(query).all())
    assert stored[1] == "2026-12-08 02:35:12.000250"  # UTC, without an offset
    assert read == {1: aware, 2: naive.replace(tzinfo=UTC), 3: None,
                    4: datetime(2026, 12, 8, 2, 35, 12, tzinfo=UTC)}
    assert all(v is None or v.tzinfo is UTC for v in read.values())
