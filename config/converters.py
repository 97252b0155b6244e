"""Pure value converters for mappings: vendor value -> canonical value and back.

Each builder returns a closure made once at load time, so converting a record is a
dictionary lookup and a call per field. A converter raises ``ValueError`` with a short
reason; the mapping turns it into a ``MappingValueError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

Converter = Callable[[Any], Any]

TYPES: tuple[str, ...] = ("string", "integer", "decimal", "boolean", "date", "datetime")
NAMED_FORMATS: tuple[str, ...] = ("iso", "epoch_ms", "epoch_s")
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})
_MISSING = object()


def check_format(type_: str, fmt: str | None) -> str | None:
    """The reason ``fmt`` cannot be used with ``type_``, or ``None`` when it can."""
    if fmt is None:
        return None
    if type_ not in ("date", "datetime"):
        return f"format applies to date and datetime fields only (this one is {type_})"
    if fmt in NAMED_FORMATS or "%" in fmt:
        return None
    return f"unknown format '{fmt}'; use iso, epoch_ms, epoch_s or a strftime pattern (%d.%m.%Y)"


def _kind(value: Any) -> str:
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- reading: vendor value -> canonical value ---------------------------------------


def _read_string(value: Any) -> str | None:
    if value is None or value.__class__ is str:
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise ValueError(f"expected text, got {_kind(value)}")


def _read_integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {_short(value)}")


def _read_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number, got {_short(value)}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"expected a number, got {_short(value)}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {_short(value)}")
    return number


def _read_boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise ValueError(f"expected true or false, got {_short(value)}")


def _epoch(value: Any, scale: int) -> datetime:
    if isinstance(value, bool):
        raise ValueError(f"expected an epoch timestamp, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected an epoch timestamp, got {_short(value)}") from None
    try:
        return datetime.fromtimestamp(number / scale, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"epoch timestamp out of range: {_short(value)}") from None


def _parse_datetime(value: Any, fmt: str) -> datetime:
    if fmt == "epoch_ms":
        return _epoch(value, 1000)
    if fmt == "epoch_s":
        return _epoch(value, 1)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif not isinstance(value, str):
        raise ValueError(f"expected a date/time text, got {_kind(value)}")
    else:
        try:
            parsed = (
                datetime.fromisoformat(value) if fmt == "iso" else datetime.strptime(value, fmt)
            )
        except ValueError:
            raise ValueError(f"cannot read {_short(value)} as a date/time ({fmt})") from None
    # Vendors without an offset (Pipedrive) report UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _reader_date(fmt: str) -> Converter:
    if fmt == "iso":

        def read_iso_date(value: Any) -> date | None:
            if value is None or value == "":
                return None
            if value.__class__ is str and len(value) == 10:
                try:
                    return date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"cannot read {_short(value)} as a date (iso)") from None
            if value.__class__ is date:
                return value
            return _parse_datetime(value, fmt).date()

        return read_iso_date

    def read_date(value: Any) -> date | None:
        if value is None or value == "":
            return None
        return _parse_datetime(value, fmt).date()

    return read_date


def _reader_datetime(fmt: str) -> Converter:
    if fmt == "iso":

        def read_iso_datetime(value: Any) -> datetime | None:
            if value.__class__ is str and value:
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"cannot read {_short(value)} as a date/time (iso)") from None
                if parsed.tzinfo is UTC:
                    return parsed
                return (
                    parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
                )
            if value is None or value == "":
                return None
            return _parse_datetime(value, fmt)

        return read_iso_datetime

    def read_datetime(value: Any) -> datetime | None:
        if value is None or value == "":
            return None
        return _parse_datetime(value, fmt)

    return read_datetime


def base_reader(type_: str, fmt: str | None) -> Converter:
    """Converter for a vendor value into ``type_`` (no value map, no default)."""
    if type_ == "date":
        return _reader_date(fmt or "iso")
    if type_ == "datetime":
        return _reader_datetime(fmt or "iso")
    return {
        "string": _read_string,
        "integer": _read_integer,
        "decimal": _read_decimal,
        "boolean": _read_boolean,
    }[type_]


def value_lookup(values: Mapping[Any, Any]) -> tuple[dict[Any, Any], Any]:
    """A lookup table keyed by the written keys and their text forms, plus the ``*`` default."""
    table: dict[Any, Any] = {}
    for key, target in values.items():
        if key == "*":
            continue
        table[key] = target
        table.setdefault(str(key), target)
        if isinstance(key, bool):
            table.setdefault(str(key).lower(), target)
    return table, values.get("*", _MISSING)


def reader(
    type_: str,
    fmt: str | None,
    values: Mapping[Any, Any] | None,
    default: Any,
    allowed: frozenset[str] | None,
) -> Converter:
    """Full read converter: value map, then type conversion, then default and vocabulary."""
    convert = base_reader(type_, fmt)
    if values:
        table, star = value_lookup(values)

        def through_map(value: Any, convert: Converter = convert) -> Any:
            if value is None:
                return None
            try:
                hit = table.get(value, _MISSING)
            except TypeError:  # unhashable (list/dict) values cannot be map keys
                hit = _MISSING
            if hit is _MISSING:
                hit = table.get(str(value), _MISSING)
            if hit is _MISSING:
                return convert(value) if star is _MISSING else star
            return hit

        convert = through_map
    if default is not None:

        def with_default(value: Any, convert: Converter = convert) -> Any:
            result = convert(value)
            return default if result is None else result

        convert = with_default
    if allowed is not None:
        choices = ", ".join(sorted(allowed))

        def within(value: Any, convert: Converter = convert) -> Any:
            result = convert(value)
            if result is not None and result not in allowed:
                raise ValueError(f"{_short(result)} is not one of {choices} (add it to values)")
            return result

        convert = within
    return convert


# -- writing: canonical value -> vendor value ---------------------------------------


def _write_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _write_decimal(value: Any) -> float:
    number = _read_decimal(value)
    if number is None:
        raise ValueError(f"expected a number, got {_short(value)}")
    return float(number)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    return _parse_datetime(value, "iso")


def _writer_temporal(type_: str, fmt: str) -> Converter:
    def write(value: Any) -> Any:
        moment = _as_datetime(value)
        if fmt == "epoch_ms":
            return int(moment.timestamp() * 1000)
        if fmt == "epoch_s":
            return int(moment.timestamp())
        if fmt != "iso":
            return moment.strftime(fmt)
        if type_ == "date":
            return moment.date().isoformat()
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return write


def writer(type_: str, fmt: str | None, values: Mapping[Any, Any] | None) -> Converter:
    """Write converter: a value map entry is sent as written; otherwise convert to ``type_``."""
    if type_ in ("date", "datetime"):
        convert = _writer_temporal(type_, fmt or "iso")
    else:
        convert = {
            "string": _write_string,
            "integer": _read_integer,
            "decimal": _write_decimal,
            "boolean": _read_boolean,
        }[type_]
    table, star = value_lookup(values or {})

    def write(value: Any) -> Any:
        if value is None:
            return None
        hit = table.get(value, _MISSING) if value.__hash__ else _MISSING
        if hit is _MISSING:
            hit = table.get(str(value), star)
        return convert(value) if hit is _MISSING else hit

    return write
