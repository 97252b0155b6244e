"""HTTP plumbing shared by connectors: sessions with a pinned CA, the one retry policy,
and the quota governor that keeps each connection inside its share of the vendor budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors.base import BudgetStatus
from connectors.errors import BudgetExhaustedError, TransientError

T = TypeVar("T")
log = structlog.get_logger(__name__)

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


DEFAULT_TIMEOUT_S = 120.0


class _TimedSession(requests.Session):
    """A session that gives every request a timeout unless the caller chose one:
    simple-salesforce and msal send none, and a server that stops answering must not
    hang a cycle (the timeout becomes a ``TransientError`` the policy retries)."""

    default_timeout_s: float = DEFAULT_TIMEOUT_S

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout_s
        return super().request(method, url, *args, **kwargs)


def make_session(
    *,
    ca_bundle: str | None = None,
    user_agent: str = "channelsync",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> requests.Session:
    """A session whose TLS trust the environment cannot override, with a default timeout.

    ``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace ``Session.verify``
    for calls that do not pass ``verify=`` (simple-salesforce and msal do not), so a
    per-connection CA is only honoured with ``trust_env`` off.
    """
    session = _TimedSession()
    session.default_timeout_s = timeout_s
    if ca_bundle:
        session.trust_env = False
        session.verify = ca_bundle
    session.headers["User-Agent"] = user_agent
    return session


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of ``TransientError``; honours ``retry_after`` when the vendor sends it."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=lambda state: _log_retry(state, what),
            reraise=True,
        )
        return retrying(fn)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return float(min(retry_after, self.max_wait * 4))
        backoff = wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait)
        return float(backoff(state))


def _log_retry(state: RetryCallState, what: str) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "retrying",
        what=what,
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        error=type(exc).__name__ if exc else None,
        status=getattr(exc, "status", None),
    )


def retry_worthy(status: int) -> bool:
    """Statuses every vendor means as "try again later" (429 is handled per vendor: it can
    also mean a spent daily budget): request timeouts and server errors."""
    return status == 408 or status >= 500


def header_int(headers: Mapping[str, str] | None, name: str) -> int | None:
    """An integer response header (rate-limit figures), ``None`` when absent or garbled.
    Looks the name up as given, then lower-cased, for plain dicts of headers."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header (whole seconds) in UTC, or None when absent or garbled."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds (the only form these vendors send)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# How long a vendor's usage figure stays authoritative once it says the share is spent.
# Daily budgets (rolling 24 h at Salesforce, midnight resets at HubSpot and Pipedrive) free
# up over hours, a 10-second window within seconds. Connectors that count a sliding window
# themselves (Dataverse) observe on every charge and so never re-check.
RECHECK_AFTER_S = {"day": 900.0, "10s": 10.0, "5min": 300.0}
DEFAULT_RECHECK_S = 900.0


class QuotaGovernor:
    """Keeps one connection within ``share`` of its vendor budget.

    Connectors call :meth:`charge` before each request (with the vendor's cost for it)
    and :meth:`observe` with what the response headers say. When the next request
    would cross the share, ``BudgetExhaustedError`` stops the connection cleanly. The
    governor lives as long as the process (a daemon runs many cycles with it), so a "spent"
    verdict resting on a vendor figure older than ``recheck_after_s`` lets one request
    through in a later cycle; its answer says whether the vendor's window has moved on.
    While it has not, that costs at most one request per ``recheck_after_s``.
    """

    def __init__(
        self,
        *,
        unit: str,
        window: str,
        limit: int | None,
        share: float = 1.0,
        recheck_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.unit = unit
        self.window = window
        self.limit = limit
        self.share = share
        self.used = 0  # as the vendor counts it, when it tells us; else our own count
        self.spent_here = 0  # what this process spent
        self.details: dict[str, object] = {}
        self.recheck_after_s = (
            RECHECK_AFTER_S.get(window, DEFAULT_RECHECK_S)
            if recheck_after_s is None
            else recheck_after_s
        )
        self._observed_at: float | None = None  # when the vendor last reported ``used``
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def share_limit(self) -> int | None:
        return None if self.limit is None else int(self.limit * self.share)

    def charge(self, cost: int = 1) -> None:
        with self._lock:
            cap = self.share_limit
            if cap is not None and self.used + cost > cap:
                now = self._clock()
                seen = self._observed_at
                if seen is None or now - seen < self.recheck_after_s:
                    raise BudgetExhaustedError(
                        f"{self.unit} budget share spent: {self.used}/{cap} "
                        f"({self.share:.0%} of {self.limit} per {self.window}); "
                        "resuming next cycle"
                    )
                self._observed_at = now  # one re-check per interval, not one per call
                log.info(
                    "quota_recheck", unit=self.unit, used=self.used, share_limit=cap,
                    window=self.window, age_s=round(now - seen, 1),
                )
            self.used += cost
            self.spent_here += cost

    def observe(
        self, *, used: int | None = None, limit: int | None = None, **details: object
    ) -> None:
        with self._lock:
            if limit is not None:
                self.limit = limit
            if used is not None:
                self.used = used
                self._observed_at = self._clock()
            self.details.update({k: v for k, v in details.items() if v is not None})

    def status(self) -> BudgetStatus:
        return BudgetStatus(
            unit=self.unit,
            used=self.used,
            limit=self.limit,
            share_limit=self.share_limit,
            window=self.window,
            details={"spent_this_process": self.spent_here, **self.details},
        )


class Pacer:
    """Slows a client down before a rolling-window limit answers 429.

    Fed with the vendor's remaining/max numbers; when fewer than ``reserve`` requests
    remain in the window it waits for the window to roll over.
    """

    def __init__(self, *, reserve: int = 2, sleep: Callable[[float], None] = time.sleep) -> None:
        self.reserve = reserve
        self._sleep = sleep
        self._wait_until = 0.0
        self._lock = threading.Lock()

    def observe(self, *, remaining: int | None, reset_in_s: float | None) -> None:
        if remaining is None or reset_in_s is None:
            return
        if remaining <= self.reserve:
            with self._lock:
                self._wait_until = max(self._wait_until, time.monotonic() + reset_in_s)

    def before_request(self) -> None:
        with self._lock:
            delay = self._wait_until - time.monotonic()
        if delay > 0:
            log.info("pacing", wait_s=round(delay, 3))
            self._sleep(delay)
