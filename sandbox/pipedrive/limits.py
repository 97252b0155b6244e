"""Pipedrive's two limits: a company-wide daily token budget and a per-token burst window."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# x-token-cost of each operation the sandbox serves, as the v2 spec states it
# (GET /v1/users is a v1 list: 20). tests/sandbox checks this table against the spec.
TOKEN_COST: dict[tuple[str, str], int] = {
    ("GET", "/api/v2/deals"): 10,
    ("GET", "/api/v2/deals/<int:record_id>"): 1,
    ("PATCH", "/api/v2/deals/<int:record_id>"): 5,
    ("DELETE", "/api/v2/deals/<int:record_id>"): 3,
    ("POST", "/api/v2/deals"): 5,
    ("GET", "/api/v2/organizations"): 10,
    ("GET", "/api/v2/organizations/<int:record_id>"): 1,
    ("PATCH", "/api/v2/organizations/<int:record_id>"): 5,
    ("DELETE", "/api/v2/organizations/<int:record_id>"): 3,
    ("POST", "/api/v2/organizations"): 5,
    ("GET", "/api/v2/dealFields"): 10,
    ("GET", "/api/v2/organizationFields"): 10,
    ("GET", "/v1/users"): 20,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may run, and the rate-limit headers to send either way."""

    allowed: bool
    reason: str | None  # "burst" | "daily" | "blocked" when refused
    headers: dict[str, str]
    retry_after_s: int = 0


class RateLimits:
    """Daily budget per company (resets at midnight UTC, the sandbox's server time) and a
    rolling burst window per API token."""

    def __init__(
        self,
        *,
        daily_tokens: int,
        burst_limit: int,
        burst_window_s: float,
        clock: Callable[[], float],
        block_after_429s: int | None = None,
        block_for_s: float = 60.0,
    ) -> None:
        self.daily_tokens = daily_tokens
        # A client that keeps calling through this many 429s in a row is blocked at the edge
        # (Cloudflare's HTML 403) for ``block_for_s``; None never blocks.
        self.block_after_429s = block_after_429s
        self.block_for_s = block_for_s
        self._refusals: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}
        self.burst_limit = burst_limit
        self.burst_window_s = burst_window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._day = -1
        self.spent_today = 0
        self._windows: dict[str, deque[float]] = {}

    def _roll_day(self, now: float) -> None:
        day = int(now // 86400)
        if day != self._day:
            self._day = day
            self.spent_today = 0

    def admit(self, token: str, cost: int) -> Verdict:
        with self._lock:
            now = self._clock()
            self._roll_day(now)
            window = self._windows.setdefault(token, deque())
            while window and window[0] <= now - self.burst_window_s:
                window.popleft()
            reset_s = (
                max(1, math.ceil(window[0] + self.burst_window_s - now))
                if window else math.ceil(self.burst_window_s)
            )
            if self._blocked_until.get(token, 0.0) > now:
                return Verdict(False, "blocked", {}, 0)
            if self.spent_today + cost > self.daily_tokens:
                to_midnight = max(1, math.ceil((self._day + 1) * 86400 - now))
                return self._refuse(token, now, Verdict(
                    False, "daily", self._headers(len(window), reset_s), to_midnight))
            if len(window) >= self.burst_limit:
                return self._refuse(token, now, Verdict(
                    False, "burst", self._headers(len(window), reset_s), reset_s))
            self._refusals.pop(token, None)
            window.append(now)
            self.spent_today += cost
            return Verdict(True, None, self._headers(len(window), reset_s))

    def _refuse(self, token: str, now: float, verdict: Verdict) -> Verdict:
        count = self._refusals.get(token, 0) + 1
        self._refusals[token] = count
        if self.block_after_429s is not None and count > self.block_after_429s:
            self._blocked_until[token] = now + self.block_for_s
            self._refusals.pop(token, None)
            return Verdict(False, "blocked", {}, 0)
        return verdict

    def _headers(self, used_in_window: int, reset_s: int) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.burst_limit),
            "x-ratelimit-remaining": str(max(0, self.burst_limit - used_in_window)),
            "x-ratelimit-reset": str(reset_s),
            "x-daily-ratelimit-token-limit": str(self.daily_tokens),
            "x-daily-ratelimit-token-remaining": str(max(0, self.daily_tokens - self.spent_today)),
        }

    def set_spent(self, tokens: int) -> None:
        """Tests: pretend the company already spent this much today."""
        with self._lock:
            self._roll_day(self._clock())
            self.spent_today = tokens
