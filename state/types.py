"""Column types shared by the tables: UTC timestamps and JSON that compares by value."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine


def _json_default(value: Any) -> Any:
    # Decimals and other scalars in vendor payloads become strings rather than failing a page.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


NUL_REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters in its strings replaced: PostgreSQL can store none."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def dumps_json(value: Any) -> str:
    """Serialise deterministically (sorted keys), so equal values store as equal text."""
    text = orjson.dumps(
        value,
        default=_json_default,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    ).decode()
    if "\\u0000" in text:  # rare: only then pay for a second pass
        return dumps_json(without_nul(value))
    return text


def loads_json(text: str | bytes | float) -> Any:
    # SQLite gives a column declared JSON numeric affinity: a bare JSON number comes back
    # already converted (int or float) rather than as text.
    if isinstance(text, int | float):
        return text
    return orjson.loads(text)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no offset, so aware values are converted to UTC before storage; naive
    values are taken to be UTC already (vendor APIs report UTC).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # SQLite hands back text: parsed straight to an aware value, a fifth of the time
        # of the generic path (parse, then attach UTC), and reads of a million accounts'
        # records type a million timestamps
        if dialect.name == "sqlite":
            return utc_from_sqlite
        return super().result_processor(dialect, coltype)


def utc_from_sqlite(value: str | None) -> datetime | None:
    """A timestamp as SQLite keeps it (UTC text without an offset, as stored here) as an
    aware datetime; text with an offset or a ``Z`` (written by hand) is converted to UTC."""
    if value is None:
        return None
    if 19 <= len(value) <= 26:  # "YYYY-MM-DD HH:MM:SS[.ffffff]": no room for an offset
        try:
            moment = datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass  # an offset or a Z after all: the general way below
        else:
            if moment.tzinfo is not None:
                return moment
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL (plain json has no equality operator)."""
    return JSON().with_variant(JSONB(), "postgresql")
