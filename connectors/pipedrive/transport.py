"""Pipedrive HTTP: the x-api-token header, token costs charged before each call, the burst
window paced from the rate-limit headers, and answers classified by what the caller does next.

429 means two things at Pipedrive: the 2-second burst window (retry after
``x-ratelimit-reset``) or the company's daily token budget (retrying cannot help until
midnight server time, so it is ``BudgetExhaustedError``). The daily headers tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import requests
import structlog

from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    RateLimitedError,
    TransientError,
    VendorError,
)
from connectors.http import (
    TRANSPORT_ERRORS,
    Pacer,
    QuotaGovernor,
    RetryPolicy,
    header_int,
    http_date,
    retry_after_seconds,
    retry_worthy,
)

log = structlog.get_logger(__name__)

# x-token-cost per operation (API v2 spec).
COST_LIST = 10
COST_GET = 1
COST_UPDATE = 5
COST_FIELDS = 10


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded answer: status, JSON body and the server's ``Date`` in epoch seconds."""

    status: int
    body: Any
    server_time: int | None


def _server_time(headers: Mapping[str, str]) -> int | None:
    """The response's ``Date`` in epoch seconds. Should a proxy have added a second one
    (requests joins them with ", "), the earliest is taken: an earlier server time only
    makes the cursor re-deliver more, never skip."""
    value = headers.get("Date")
    if not value:
        return None
    parts = value.split(", ")
    stamps: list[int] = []
    for i in range(0, len(parts) - 1, 2):  # "Thu, 26 Nov 2026 22:41:59 GMT" holds one ", "
        served = http_date(f"{parts[i]}, {parts[i + 1]}")
        if served is not None:
            stamps.append(int(served.timestamp()))
    return min(stamps) if stamps else None


class PipedriveHttp:
    """One connection's HTTP calls; the token never leaves this object (nor the logs)."""

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        api_token: str,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        pacer: Pacer,
        timeout: float,
        connection: str,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"x-api-token": api_token, "Accept": "application/json"}
        self._retry = retry
        self._quota = quota
        self._pacer = pacer
        self._timeout = timeout
        self._connection = connection

    def call(
        self, method: str, path: str, *, cost: int, params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Reply:
        """One API operation, retried on transient failures; 4xx other than 401/429 come
        back as a ``Reply`` for the caller to judge."""
        return self._retry.call(
            lambda: self._once(method, path, cost, params, json), what=f"{method} {path}"
        )

    def _once(
        self, method: str, path: str, cost: int, params: Mapping[str, Any] | None, json: Any
    ) -> Reply:
        self._pacer.before_request()
        self._quota.charge(cost)
        try:
            resp = self._session.request(
                method, self._base + path, params=params,
                data=None if json is None else orjson.dumps(json),
                headers=self._headers if json is None
                else {**self._headers, "Content-Type": "application/json"},
                timeout=self._timeout,
            )
            content = resp.content
        except TRANSPORT_ERRORS as exc:
            raise TransientError(f"pipedrive {method} {path}: {type(exc).__name__}") from exc
        headers = resp.headers
        self._observe(headers)
        status = resp.status_code
        if status == 429:
            self._rate_limited(headers, cost, path)
        if status == 401:
            raise AuthError(
                f"pipedrive ({self._connection}): the API token was refused (401); regenerate "
                "it under Personal preferences > API and update the connection's secret"
            )
        if retry_worthy(status):
            raise TransientError(f"pipedrive {method} {path}: HTTP {status}", status=status)
        try:
            body = orjson.loads(content) if content else None
        except orjson.JSONDecodeError as exc:
            if status == 403:  # Cloudflare's HTML page after hammering through 429s
                raise VendorError(
                    f"pipedrive ({self._connection}): blocked with a non-JSON 403; stop and "
                    "resume next cycle", status=403,
                ) from exc
            raise TransientError(
                f"pipedrive {method} {path}: unreadable JSON body (HTTP {status})", status=status
            ) from exc
        return Reply(status=status, body=body, server_time=_server_time(headers))

    def _observe(self, headers: Mapping[str, str]) -> None:
        limit = header_int(headers, "x-daily-ratelimit-token-limit")
        remaining = header_int(headers, "x-daily-ratelimit-token-remaining")
        if limit is not None and remaining is not None:
            self._quota.observe(used=limit - remaining, limit=limit,
                                burst_limit=header_int(headers, "x-ratelimit-limit"))
        self._pacer.observe(
            remaining=header_int(headers, "x-ratelimit-remaining"),
            reset_in_s=header_int(headers, "x-ratelimit-reset"),
        )

    def _rate_limited(self, headers: Mapping[str, str], cost: int, path: str) -> None:
        daily_left = header_int(headers, "x-daily-ratelimit-token-remaining")
        if daily_left is not None and daily_left < cost:
            log.warning("pipedrive_daily_budget_exhausted", connection=self._connection,
                        remaining=daily_left, cost=cost)
            raise BudgetExhaustedError(
                f"pipedrive ({self._connection}): the company's daily token budget is spent "
                f"({daily_left} left, {path} costs {cost}); resuming after midnight server time"
            )
        wait = retry_after_seconds(headers.get("x-ratelimit-reset")) or retry_after_seconds(
            headers.get("Retry-After")
        )
        raise RateLimitedError(f"pipedrive {path}: burst limit (429)", retry_after=wait)
