"""Every HubSpot path and hubspot-api-client call the connector makes, in one adapter.

HubSpot retires the v1-v3 paths this client targets in September 2027 (Associations v4
already on 2027-03-30); the date-based API (``/crm/objects/2026-03/...``) replaces them.
Moving is meant to be a change to this module alone: the rest of the connector speaks in
plain dicts (request bodies and decoded JSON answers) and never sees a path or an SDK type.

The SDK is used for transport, auth and TLS (urllib3, ``Configuration.ssl_ca_cert`` and
``host`` per API package), with ``_preload_content=False`` so that answers are decoded once
with orjson instead of into SDK models (the sandbox tests check they would deserialize).
urllib3's own retries are switched off: retrying happens only in ``RetryPolicy``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
import urllib3
from hubspot import HubSpot

from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    RateLimitedError,
    TransientError,
    VendorError,
)
from connectors.http import (
    Pacer,
    QuotaGovernor,
    RetryPolicy,
    header_int,
    http_date,
    retry_after_seconds,
    retry_worthy,
)

log = structlog.get_logger(__name__)

TEN_SECONDS = 10.0
# HubSpot stamps a request when it arrives, a little after we count it: wait a bit longer.
ARRIVAL_MARGIN_S = 0.1
# Answers the caller handles itself instead of raising (per-record batch outcomes).
BATCH_STATUSES = frozenset({200, 207, 400, 404})


class HubSpotApi:
    """The HubSpot CRM API as this connector uses it: each method is one HTTP call,
    charged to the quota, paced, retried through the policy, errors classified."""

    def __init__(
        self,
        *,
        client: HubSpot,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        pacer: Pacer,
        search_pacer: Pacer | None,
        search_per_second: float | None,
        burst_share: float = 1.0,
        timeout_s: float = 60.0,
        connection: str = "hubspot",
    ) -> None:
        # A copy of the caller's configuration with urllib3 retries off (one retry place).
        sdk = HubSpot(**{**client.config, "retry": False})
        crm = sdk.crm
        self._basic = {"companies": crm.companies.basic_api, "deals": crm.deals.basic_api}
        self._search = {"companies": crm.companies.search_api, "deals": crm.deals.search_api}
        self._batch = {"companies": crm.companies.batch_api, "deals": crm.deals.batch_api}
        self._properties = crm.properties.core_api
        self._associations = crm.associations.v4.batch_api
        # The SDK gives every API it generates its own ApiClient and urllib3 pool, so a
        # cycle would open (and handshake) one connection per API it calls: they share the
        # first one's pool (same host, TLS and retry settings: one configuration).
        apis: list[Any] = [*self._basic.values(), *self._search.values(),
                           *self._batch.values(), self._properties, self._associations]
        self._pool = apis[0].api_client.rest_client.pool_manager
        for api in apis[1:]:
            api.api_client.rest_client.pool_manager = self._pool
        self._retry = retry
        self._quota = quota
        self._pacer = pacer
        self._search_pacer = search_pacer
        self._search_per_second = search_per_second
        self._recent_searches: deque[float] = deque()
        self._burst_share = burst_share
        self._burst_max: int | None = None  # as the last rate-limit headers said
        self._interval_s = TEN_SECONDS
        self._others = 0  # requests of other apps in the account's current window
        self._ours: deque[float] = deque()  # our request times within the window
        self._timeout = timeout_s
        self._connection = connection
        self.server_ms: int | None = None  # the last answer's Date header (epoch ms)

    # -- the calls ---------------------------------------------------------------------------
    def properties(self, object_type: str) -> list[dict[str, Any]]:
        """``GET /crm/v3/properties/{objectType}``."""
        api = self._properties
        body = self._call(
            "properties",
            lambda: api.get_all_with_http_info(object_type, archived=False, **self._raw()),
        )
        return list(body.get("results") or [])

    def search(self, object_type: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/{objectType}/search``."""
        api = self._search[object_type]
        return self._call(
            "search",
            lambda: api.do_search_with_http_info(
                public_object_search_request=dict(request), **self._raw()
            ),
            search=True,
        )

    def list_archived(
        self, object_type: str, *, after: str | None, limit: int, properties: list[str]
    ) -> dict[str, Any]:
        """``GET /crm/v3/objects/{objectType}?archived=true`` (only archived records)."""
        api = self._basic[object_type]
        kwargs: dict[str, Any] = {"limit": limit, "properties": properties, "archived": True}
        if after:
            kwargs["after"] = after
        return self._call("list_archived", lambda: api.get_page_with_http_info(
            **kwargs, **self._raw()))

    def batch_update(
        self, object_type: str, inputs: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        """``POST /crm/v3/objects/{objectType}/batch/update``; the status (200, 207, or a
        whole-batch 400/404) comes back with the body for per-record mapping."""
        api = self._batch[object_type]
        return self._call_status(
            "batch_update",
            lambda: api.update_with_http_info(
                batch_input_simple_public_object_batch_input={"inputs": inputs}, **self._raw()
            ),
        )

    def deal_companies(self, deal_ids: list[str]) -> dict[str, Any]:
        """``POST /crm/v4/associations/deals/companies/batch/read`` (at most 1,000 ids)."""
        api = self._associations
        _, body = self._call_status(
            "associations",
            lambda: api.get_page_with_http_info(
                "deals", "companies",
                {"inputs": [{"id": i} for i in deal_ids]}, **self._raw(),
            ),
        )
        return body

    def close(self) -> None:
        self._pool.clear()

    # -- plumbing ----------------------------------------------------------------------------
    def _raw(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self._timeout}

    def _call(self, what: str, send: Callable[[], Any], *, search: bool = False
              ) -> dict[str, Any]:
        status, body = self._call_status(what, send, search=search)
        if status >= 300:
            raise VendorError(
                f"HubSpot {what} failed with {status}: {body.get('message', '')}",
                status=status, code=str(body.get("category") or ""),
            )
        return body

    def _call_status(
        self, what: str, send: Callable[[], Any], *, search: bool = False
    ) -> tuple[int, dict[str, Any]]:
        def attempt() -> tuple[int, dict[str, Any]]:
            self._quota.charge(1)
            self._pace(search)
            return self._once(what, send)

        return self._retry.call(attempt, what=f"hubspot.{what}")

    def _pace(self, search: bool) -> None:
        """Wait if the window is nearly spent. Search answers carry no rate-limit headers,
        so between headers our own requests are counted against the last figures seen."""
        self._pacer.before_request()
        now = time.monotonic()
        self._expire_ours(now)
        self._ours.append(now)
        self._feed_pacer(now)
        if not search or self._search_pacer is None or not self._search_per_second:
            return
        self._search_pacer.before_request()
        now = time.monotonic()
        while self._recent_searches and now - self._recent_searches[0] >= 1.0:
            self._recent_searches.popleft()
        self._recent_searches.append(now)
        left = self._search_per_second - len(self._recent_searches)
        self._search_pacer.observe(
            remaining=int(left),
            reset_in_s=1.0 + ARRIVAL_MARGIN_S - (now - self._recent_searches[0]),
        )

    def _once(self, what: str, send: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
        try:
            response = send()
            status, headers, raw = response.status, response.headers, response.data
            response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"HubSpot {what}: connection failed ({type(exc).__name__})"
                                 ) from None
        except Exception as exc:  # the SDK raises one ApiException class per API package
            # A TLS failure is ApiException(status=0) without a body, on which the SDK
            # itself then fails with AttributeError: look at the exception underneath too.
            api_exc = exc if hasattr(exc, "body") else exc.__context__
            status = getattr(api_exc, "status", None)
            if status is None or not hasattr(api_exc, "body"):
                raise
            if status == 0:
                reason = " ".join(str(getattr(api_exc, "reason", "")).split())
                raise VendorError(f"HubSpot {what}: {reason}"[:300], code="TLS") from None
            headers = getattr(api_exc, "headers", None) or {}
            raw = getattr(api_exc, "body", None) or b""
        self._observe(headers)
        served = http_date(headers.get("Date") or headers.get("date"))
        self.server_ms = None if served is None else int(served.timestamp() * 1000)
        body = self._decode(what, status, raw)
        if status < 300 or status in BATCH_STATUSES:
            return status, body
        raise self._error(what, status, body, headers)

    def _decode(self, what: str, status: int, raw: bytes | str) -> dict[str, Any]:
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            if status < 300:
                raise TransientError(f"HubSpot {what}: malformed JSON answer", status=status
                                     ) from None
            body = {"message": str(raw[:200])}
        if not isinstance(body, dict):
            raise TransientError(f"HubSpot {what}: unexpected JSON answer", status=status)
        return body

    def _error(self, what: str, status: int, body: dict[str, Any], headers: Mapping[str, str]
               ) -> Exception:
        message = str(body.get("message") or "")[:300]
        if status == 429:
            if body.get("policyName") == "DAILY":
                return BudgetExhaustedError(
                    f"HubSpot daily API limit reached for {self._connection}; resuming next cycle"
                )
            wait = retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
            if wait is None:  # HubSpot sends none; a rolling window frees up within 10 s
                wait = 1.0 if body.get("policyName") == "SECONDLY" else TEN_SECONDS
            return RateLimitedError(f"HubSpot {what}: {message or 'rate limited'}",
                                    retry_after=wait)
        if status in (401, 403):
            return AuthError(
                f"HubSpot refused the private-app token for {self._connection} "
                f"({status} {body.get('category', '')}): {message}"
            )
        if retry_worthy(status):
            return TransientError(f"HubSpot {what}: server error {status}", status=status)
        return VendorError(f"HubSpot {what} failed with {status}: {message}", status=status,
                           code=str(body.get("category") or ""))

    def _observe(self, headers: Mapping[str, str]) -> None:
        daily = header_int(headers, "X-HubSpot-RateLimit-Daily")
        daily_left = header_int(headers, "X-HubSpot-RateLimit-Daily-Remaining")
        if daily is not None and daily_left is not None:
            self._quota.observe(used=daily - daily_left, limit=daily)
        burst = header_int(headers, "X-HubSpot-RateLimit-Max")
        left = header_int(headers, "X-HubSpot-RateLimit-Remaining")
        interval = header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if burst is not None and left is not None:
            now = time.monotonic()
            self._expire_ours(now)
            self._burst_max, self._interval_s = burst, (interval or 10_000) / 1000
            self._others = max(0, burst - left - len(self._ours))
            self._feed_pacer(now)
            self._quota.observe(burst_max=burst, burst_remaining=left)

    def _expire_ours(self, now: float) -> None:
        while self._ours and now - self._ours[0] >= self._interval_s:
            self._ours.popleft()

    def _feed_pacer(self, now: float) -> None:
        if self._burst_max is None:
            return
        # This connection may use ``burst_share`` of the window, and less when the other
        # apps of the account leave less than that.
        allowed = int(self._burst_max * self._burst_share)
        left = min(allowed, self._burst_max - self._others) - len(self._ours)
        oldest = self._ours[0] if self._ours else now
        wait = self._interval_s + ARRIVAL_MARGIN_S - (now - oldest)
        self._pacer.observe(remaining=left, reset_in_s=max(0.0, wait))


