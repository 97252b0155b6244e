"""Shared plumbing of the HubSpot sandbox: private-app tokens, account rate limits,
HubSpot's error shapes and the admin surface."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any, Self

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, SandboxApp, json_response
from sandbox.fragments import FragmentCache
from sandbox.hubspot.account import HubSpotAccount
from sandbox.hubspot.limits import RateLimits, rate_limit_body
from sandbox.hubspot.schema import (
    OBJECT_ALIASES,
    PropertyValueError,
)
from sandbox.hubspot.store import ObjectStore
from sandbox.world import CrmSeed

LIST_MAX, SEARCH_MAX, BATCH_MAX, ASSOC_BATCH_MAX, ASSOC_PAGE_MAX = 100, 200, 100, 1000, 500
SEARCH_GROUPS_MAX, SEARCH_FILTERS_MAX, SEARCH_GROUP_FILTERS_MAX = 5, 25, 10
# (from, to) -> (primary type, unlabeled type)
ASSOC_TYPES = {("deals", "companies"): (5, 341), ("companies", "deals"): (6, 342)}
_HEADERS_KEY = "hubspot.ratelimit"
# One HubSpot account per sandbox instance: each gets its own portal id unless given one.
_PORTAL_IDS = itertools.count(4_000_001)


def error_body(category: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
            "category": category, **extra}


def standard_error(category: str, message: str, context: dict[str, list[str]],
                   sub_category: str | None = None) -> dict[str, Any]:
    """One entry of a batch response's ``errors[]`` (HubSpot's StandardError)."""
    out: dict[str, Any] = {"status": "error", "category": category, "message": message,
                           "context": context, "links": {}, "errors": []}
    if sub_category:
        out["subCategory"] = sub_category
    return out


class HubSpotBase(SandboxApp):
    """One HubSpot portal: token, limits, error shapes and the admin surface.

    Limits are per account, as at HubSpot; ``None`` disables one.
    """

    vendor = "hubspot"

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        portal_id: int | None = None,
        burst_limit: int | None = 190,
        daily_limit: int | None = 650_000,
        search_per_second: int | None = 5,
        search_result_cap: int = 10_000,
        search_index_lag_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(faults=faults)
        self.account = HubSpotAccount(
            portal_id=portal_id if portal_id is not None else next(_PORTAL_IDS), lock=self.lock)
        self.limits = RateLimits(
            burst=burst_limit, daily=daily_limit, search_per_second=search_per_second,
            clock=clock,
        )
        self.search_result_cap = search_result_cap
        self.set_search_index_lag(search_index_lag_s)
        self.fragments = FragmentCache()
        self._tokens: dict[str, float] = {}
        self.seed_ids: dict[str, str] = {}  # "account:<seed key>" -> HubSpot id, after from_seed
        self.token = self.rotate_token()

    @classmethod
    def from_seed(cls, crm: CrmSeed, *, faults: Faults | None = None, **options: Any
                  ) -> Self:
        app = cls(faults=faults, **options)
        app.seed_ids = app.account.seed(crm)
        return app

    def load_fixture(self, data: dict[str, Any]) -> None:
        """Native records; format in :mod:`sandbox.hubspot.account`."""
        self.account.load_fixture(data)

    def set_search_index_lag(self, seconds: float) -> None:
        """Search sees a change between half of ``seconds`` and ``seconds`` after it is made
        (HubSpot: "the search index lags writes by seconds"); 0 makes it see changes at once."""
        with self.lock:
            for store in self.account.objects.values():
                store.index_lag_ms = int(seconds * 1000)

    def catch_up_search_index(self, obj: str | None = None, ids: list[str] | None = None
                              ) -> None:
        """The search index catches up (with ``ids`` of ``obj`` only, when given)."""
        with self.lock:
            for name, store in self.account.objects.items():
                if obj is None or name == obj:
                    store.catch_up(None if ids is None else [int(i) for i in ids])

    def rotate_token(self) -> str:
        """Issue a new private-app token (the old one stays valid until expired by faults)."""
        token = f"pat-na1-{uuid.uuid4()}"
        self._tokens[token] = time.time()
        self.token = token
        return token

    def credentials(self) -> dict[str, Any]:
        return {"access_token": self.token, "portal_id": self.account.portal_id}

    # -- vendor error shapes --------------------------------------------------------------
    def error_server(self) -> Response:
        return json_response(error_body("INTERNAL_ERROR", "internal error"), 500)

    def error_rate_limited(self) -> Response:
        headers = self.limits.headers()
        headers["X-HubSpot-RateLimit-Remaining"] = "0"
        return json_response(rate_limit_body("TEN_SECONDLY_ROLLING"), 429, headers)

    def error_token_expired(self) -> Response:
        return json_response(error_body(
            "EXPIRED_AUTHENTICATION",
            "The access token used to make this call expired or was revoked.",
        ), 401)

    def not_found(self, request: Request, exc: HTTPException) -> Response:
        return json_response(error_body(
            "OBJECT_NOT_FOUND" if (exc.code or 404) == 404 else "VALIDATION_ERROR",
            exc.description or "Resource not found",
        ), exc.code or 404)

    def _begin(self, request: Request, *, search: bool = False) -> Response | None:
        """Authenticate, then count the request against the account's limits."""
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        issued = self._tokens.get(token)
        if issued is None:
            return json_response(error_body(
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ), 401)
        if self.faults.token_expired(issued):
            return self.error_token_expired()
        verdict = self.limits.admit(search=search)
        # HubSpot does not send the rate-limit headers on CRM search responses.
        request.environ[_HEADERS_KEY] = {} if search else verdict.headers
        if not verdict.allowed:
            assert verdict.policy is not None
            return json_response(rate_limit_body(verdict.policy), 429, verdict.headers)
        return None

    def _reply(self, request: Request, data: Any, status: int = 200) -> Response:
        return json_response(data, status, request.environ.get(_HEADERS_KEY))

    def _reply_bytes(self, request: Request, body: bytes) -> Response:
        return Response(body, status=200, headers=request.environ.get(_HEADERS_KEY),
                        content_type="application/json;charset=UTF-8")

    def _fail(self, request: Request, status: int, category: str, message: str,
              **extra: Any) -> Response:
        return self._reply(request, error_body(category, message, **extra), status)

    def _invalid(self, request: Request, message: str) -> Response:
        return self._fail(request, 400, "VALIDATION_ERROR", message)

    def _store(self, obj: str) -> ObjectStore | None:
        name = OBJECT_ALIASES.get(obj)
        return self.account.objects[name] if name else None

    def _body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    # -- admin surface (/__sandbox/...) ---------------------------------------------------------
    def admin(self, request: Request, action: str) -> Response | None:
        """``POST /__sandbox/records`` with ``{"op": "create|update|archive|restore",
        "object": "deals", "id": "...", "properties": {...}, "companies": [...]}`` edits as a
        user would; ``POST /__sandbox/rotate_token`` issues a new token."""
        if action == "rotate_token":
            return json_response({"access_token": self.rotate_token()})
        if action != "records":
            return None
        body = self._body(request) or {}
        obj = OBJECT_ALIASES.get(str(body.get("object")), "")
        op = body.get("op")
        try:
            if op == "create":
                rid = self.account.create(obj, body.get("properties") or {},
                                          companies=body.get("companies") or [])
                return json_response({"id": rid}, 201)
            if op == "update":
                self.account.update(obj, str(body["id"]), body.get("properties") or {})
            elif op == "archive":
                self.account.archive(obj, str(body["id"]))
            elif op == "restore":
                self.account.restore(obj, str(body["id"]))
            else:
                return json_response({"error": f"unknown op {op!r}"}, 400)
        except (KeyError, PropertyValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"id": str(body["id"])})


def multi_values(values: list[str]) -> list[str]:
    return [v for raw in values for v in raw.split(",") if v]

