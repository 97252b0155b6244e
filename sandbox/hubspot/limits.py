"""HubSpot's account-wide API limits: a rolling ten-second burst, a daily cap and the
separate per-second limit of the CRM search endpoints, with HubSpot's headers and 429s."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

INTERVAL_MS = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may run, the policy that refused it, and the headers to send."""

    allowed: bool
    policy: str | None
    headers: dict[str, str]


class RateLimits:
    """Counts admitted requests; refused requests do not count (as at HubSpot)."""

    def __init__(
        self,
        *,
        burst: int | None,
        daily: int | None,
        search_per_second: int | None,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], str] = lambda: datetime.now(UTC).date().isoformat(),
    ) -> None:
        self.burst = burst
        self.daily = daily
        self.search_per_second = search_per_second
        self._clock = clock
        self._today = today
        self._window: deque[float] = deque()
        self._search: deque[float] = deque()
        self._day = today()
        self.used_today = 0
        self.refused = 0  # 429s answered, for tests and benchmarks
        self.peak_window = 0  # most requests admitted within one ten-second window
        self._lock = threading.Lock()

    def admit(self, *, search: bool = False) -> Verdict:
        with self._lock:
            now = self._clock()
            day = self._today()
            if day != self._day:
                self._day, self.used_today = day, 0
            while self._window and now - self._window[0] >= INTERVAL_MS / 1000:
                self._window.popleft()
            while self._search and now - self._search[0] >= 1.0:
                self._search.popleft()
            policy = None
            if self.daily is not None and self.used_today >= self.daily:
                policy = "DAILY"
            elif self.burst is not None and len(self._window) >= self.burst:
                policy = "TEN_SECONDLY_ROLLING"
            elif (
                search
                and self.search_per_second is not None
                and len(self._search) >= self.search_per_second
            ):
                policy = "SECONDLY"
            if policy is not None:
                self.refused += 1
            else:
                self._window.append(now)
                self.peak_window = max(self.peak_window, len(self._window))
                self.used_today += 1
                if search:
                    self._search.append(now)
            return Verdict(policy is None, policy, self._headers())

    def headers(self) -> dict[str, str]:
        """The current figures, without counting a request."""
        with self._lock:
            return self._headers()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.daily is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, self.daily - self.used_today)
            )
        if self.burst is not None:
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(INTERVAL_MS)
            headers["X-HubSpot-RateLimit-Max"] = str(self.burst)
            headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, self.burst - len(self._window)))
        return headers


RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "DAILY": "You have reached your daily limit.",
    "SECONDLY": "You have reached your secondly limit.",
}


def rate_limit_body(policy: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": RATE_LIMIT_MESSAGES[policy],
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": uuid.uuid4().hex,
    }
