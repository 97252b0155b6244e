"""Small annotated types shared by the settings models (durations, URLs, codes)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from config.durations import parse_duration, parse_period_months

STRICT = ConfigDict(extra="forbid", validate_default=True)
"""Unknown keys are errors; defaults are validated like written values."""


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value.rstrip("/")


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free
        raise ValueError(
            f"'{value}' is not a host:port listen address "
            "(e.g. 127.0.0.1:8787; port 0 picks a free one)"
        )
    return value


def _duration_or_never(value: Any) -> timedelta | None:
    # true: right after release; false: never (only a channel manager's decision opens it).
    if value is True:
        return timedelta(0)
    if value is False or value is None:
        return None
    return parse_duration(value)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _country(value: Any) -> Any:
    if isinstance(value, bool):  # YAML 1.1 reads a bare NO (Norway) as false
        raise ValueError(f"got {str(value).lower()}, not a country code; quote it: 'NO'")
    return _upper(value)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Months = Annotated[int, BeforeValidator(parse_period_months), Field(gt=0)]
DurationOrNever = Annotated[timedelta | None, BeforeValidator(_duration_or_never)]
HttpUrl = Annotated[str, AfterValidator(_check_url)]
ListenAddress = Annotated[str, AfterValidator(_check_listen)]
CountryCode = Annotated[str, BeforeValidator(_country), Field(pattern=r"^[A-Z]{2}$")]
CurrencyCode = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
