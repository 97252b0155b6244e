"""The Pipedrive API v2 sandbox: deals, organizations, their field lists and users, behind
``x-api-token`` auth, a daily token budget and a 2-second burst window."""

from __future__ import annotations

import base64
import hmac
import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, SandboxApp, json_response
from sandbox.pipedrive.company import Company, NotFoundError
from sandbox.pipedrive.fields import DEALS, ORGANIZATIONS, InputError
from sandbox.pipedrive.limits import TOKEN_COST, RateLimits
from sandbox.pipedrive.query import DEFAULT_LIMIT, MAX_LIMIT, int_arg, parse_list_args
from sandbox.pipedrive.store import StoredRecord, encode_cursor
from sandbox.world import CrmSeed

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
JSON_TYPE = "application/json; charset=utf-8"
CLOUDFLARE_PAGE = (b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title>"
                   b"</head><body><h1>Sorry, you have been blocked</h1></body></html>")


def pd_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, with_code: bool = False
) -> Response:
    body: dict[str, Any] = {"success": False, "error": message, "error_info": ERROR_INFO,
                            "data": None, "additional_data": None}
    if with_code:
        body["errorCode"] = status
    return json_response(body, status, headers)


def _raw_json(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, content_type=JSON_TYPE)


class PipedriveSandbox(SandboxApp):
    """One Pipedrive company. Limits are constructor arguments so tests reach them quickly;
    ``clock`` (epoch seconds) drives record timestamps, the 30-day deleted window and the
    daily budget reset."""

    vendor = "pipedrive"

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        key_seed: int | None = None,
        daily_tokens: int = 300_000,
        burst_limit: int = 80,
        burst_window_s: float = 2.0,
        block_after_429s: int | None = 200,
        clock: Callable[[], float] = time.time,
        company_domain: str | None = None,
    ) -> None:
        self.clock = clock
        self.key_seed = key_seed if key_seed is not None else secrets.randbits(64)
        self.company = Company(rng=random.Random(self.key_seed), clock=clock)
        # one sandbox = one Pipedrive company: its own subdomain unless given one
        self.company_domain = company_domain or f"sandbox-{self.key_seed % 16**8:08x}"
        self.limits = RateLimits(
            daily_tokens=daily_tokens, burst_limit=burst_limit,
            burst_window_s=burst_window_s, clock=clock, block_after_429s=block_after_429s,
        )
        self.api_token = secrets.token_hex(20)
        self.token_issued_at = time.time()  # wall clock: Faults.expire_tokens uses it too
        self.seed_ids: dict[str, int] = {}
        super().__init__(faults=faults)

    @classmethod
    def from_seed(
        cls, crm: CrmSeed, *, faults: Faults | None = None, **options: Any
    ) -> PipedriveSandbox:
        """A company holding the seed's users, organizations and deals, with the custom
        fields the default mapping uses. ``options`` go to the constructor."""
        from sandbox.pipedrive.seed import seed_company

        app = cls(faults=faults, **options)
        with app.lock:
            app.seed_ids = seed_company(app.company, crm)
        return app

    # -- SandboxApp -------------------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        rid = "<int:record_id>"
        for entity, name in ((DEALS, "deals"), (ORGANIZATIONS, "organizations")):
            yield Rule(f"/api/v2/{name}", endpoint=f"list_{entity}", methods=["GET"])
            yield Rule(f"/api/v2/{name}", endpoint=f"create_{entity}", methods=["POST"])
            yield Rule(f"/api/v2/{name}/{rid}", endpoint=f"get_{entity}", methods=["GET"])
            yield Rule(f"/api/v2/{name}/{rid}", endpoint=f"patch_{entity}", methods=["PATCH"])
            yield Rule(f"/api/v2/{name}/{rid}", endpoint=f"delete_{entity}", methods=["DELETE"])
        yield Rule("/api/v2/dealFields", endpoint="fields_deals", methods=["GET"])
        yield Rule("/api/v2/organizationFields", endpoint="fields_organizations", methods=["GET"])
        yield Rule("/v1/users", endpoint="users", methods=["GET"])

    def error_server(self) -> Response:
        return pd_error(500, "Internal server error")

    def error_rate_limited(self) -> Response:
        headers = {"x-ratelimit-limit": str(self.limits.burst_limit),
                   "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2", "Retry-After": "2"}
        return pd_error(429, "Request over limit", headers=headers, with_code=True)

    def error_token_expired(self) -> Response:
        return pd_error(401, "unauthorized access", with_code=True)

    def not_found(self, request: Request, exc: HTTPException) -> Response:
        if exc.code == 405:
            return pd_error(405, "Method not allowed")
        return pd_error(404, f"Unknown method {request.path}")

    def credentials(self) -> dict[str, Any]:
        return {"api_token": self.api_token, "company_domain": self.company_domain,
                "header": "x-api-token", "api_prefix": "/api/v2"}

    def rotate_token(self) -> str:
        """A user regenerates the API token: the old one stops working."""
        self.api_token = secrets.token_hex(20)
        self.token_issued_at = time.time()
        return self.api_token

    # -- the guard every API call passes ----------------------------------------------
    def _api(self, request: Request, route: str, handler: Callable[[], Response]) -> Response:
        token = request.headers.get("x-api-token", "")
        if route.startswith("/v1/") and not token:
            token = request.args.get("api_token", "")
        if not token or not hmac.compare_digest(token.encode(), self.api_token.encode()):
            return pd_error(401, "unauthorized access", with_code=True)
        if self.faults.token_expired(self.token_issued_at):
            return self.error_token_expired()
        # The Date header is the server time when the data was read (clients use it to
        # know which one-second update_time stamps are final).
        served_at = http_date(self.clock())
        verdict = self.limits.admit(token, TOKEN_COST[(request.method, route)])
        if verdict.reason == "blocked":
            return Response(CLOUDFLARE_PAGE, status=403, content_type="text/html; charset=UTF-8")
        if not verdict.allowed:
            headers = {**verdict.headers, "Retry-After": str(verdict.retry_after_s)}
            message = ("Daily token budget exhausted" if verdict.reason == "daily"
                       else "Request over limit")
            return pd_error(429, message, headers=headers, with_code=True)
        try:
            with self.lock:
                response = handler()
        except InputError as exc:
            response = pd_error(400, str(exc))
        except NotFoundError:
            response = pd_error(404, "Entity was not found")
        response.headers.update(verdict.headers)
        response.headers["Date"] = served_at
        return response

    # -- endpoints --------------------------------------------------------------------
    def list_deals(self, request: Request) -> Response:
        return self._api(request, "/api/v2/deals", lambda: self._list(request, DEALS))

    def list_organizations(self, request: Request) -> Response:
        return self._api(request, "/api/v2/organizations",
                         lambda: self._list(request, ORGANIZATIONS))

    def get_deals(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/deals/<int:record_id>",
                         lambda: self._one(self.company.record(DEALS, record_id)))

    def get_organizations(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/organizations/<int:record_id>",
                         lambda: self._one(self.company.record(ORGANIZATIONS, record_id)))

    def patch_deals(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/deals/<int:record_id>",
                         lambda: self._patch(request, DEALS, record_id))

    def patch_organizations(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/organizations/<int:record_id>",
                         lambda: self._patch(request, ORGANIZATIONS, record_id))

    def delete_deals(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/deals/<int:record_id>",
                         lambda: self._delete(DEALS, record_id))

    def delete_organizations(self, request: Request, record_id: int) -> Response:
        return self._api(request, "/api/v2/organizations/<int:record_id>",
                         lambda: self._delete(ORGANIZATIONS, record_id))

    def create_deals(self, request: Request) -> Response:
        return self._api(request, "/api/v2/deals", lambda: self._create(request, DEALS))

    def create_organizations(self, request: Request) -> Response:
        return self._api(request, "/api/v2/organizations",
                         lambda: self._create(request, ORGANIZATIONS))

    def fields_deals(self, request: Request) -> Response:
        return self._api(request, "/api/v2/dealFields", lambda: self._fields(request, DEALS))

    def fields_organizations(self, request: Request) -> Response:
        return self._api(request, "/api/v2/organizationFields",
                         lambda: self._fields(request, ORGANIZATIONS))

    def users(self, request: Request) -> Response:
        def answer() -> Response:
            self.company.default_owner()
            return json_response({"success": True, "data": list(self.company.users.values())})

        return self._api(request, "/v1/users", answer)

    # -- handlers ---------------------------------------------------------------------
    def _list(self, request: Request, entity: str) -> Response:
        query, custom_keys = parse_list_args(request.args, entity)
        store = self.company.stores[entity]
        records, following = store.query(query, self.clock())
        chunks = [_blob(rec, custom_keys) for rec in records]
        next_cursor = (
            encode_cursor(query.sort_by, query.descending, *following) if following else None
        )
        body = b"".join((
            b'{"success":true,"data":[', b",".join(chunks),
            b'],"additional_data":{"next_cursor":', orjson.dumps(next_cursor), b"}}",
        ))
        return _raw_json(body)

    def _one(self, rec: StoredRecord) -> Response:
        return _raw_json(b'{"success":true,"data":' + rec.blob + b"}")

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError as exc:
            raise InputError("Request body is not valid JSON") from exc
        if not isinstance(body, dict) or not body:
            raise InputError("Request body must be a non-empty JSON object")
        return body

    def _patch(self, request: Request, entity: str, record_id: int) -> Response:
        body = self._body(request)
        self.company.record(entity, record_id, include_deleted=False)
        names = [k for k in body if k != "custom_fields"]
        custom = body.get("custom_fields")
        if isinstance(custom, dict):
            by_key = self.company.fields.custom_by_key(entity)
            names += [k for k in custom] + [by_key[k].field_name for k in custom if k in by_key]
        rule = self.faults.rejection_for(entity, str(record_id), names)
        if rule is not None:
            raise InputError(rule.message)
        return self._one(self.company.update(entity, record_id, body))

    def _create(self, request: Request, entity: str) -> Response:
        body = self._body(request)
        required = "title" if entity == DEALS else "name"
        if not isinstance(body.get(required), str):
            raise InputError(f"{required}: required")
        return self._one(self.company.create(entity, body))

    def _delete(self, entity: str, record_id: int) -> Response:
        self.company.delete(entity, record_id)
        return json_response({"success": True, "data": {"id": record_id}})

    def _fields(self, request: Request, entity: str) -> Response:
        limit = int_arg(request.args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        start = 0
        if request.args.get("cursor"):
            try:
                start = int(orjson.loads(_unb64(request.args["cursor"]))["offset"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                raise InputError("Invalid cursor") from exc
        fields = self.company.fields.by_entity[entity]
        chunk = fields[start:start + limit]
        nxt = None
        if start + limit < len(fields):
            raw = orjson.dumps({"offset": start + limit})
            nxt = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return json_response({"success": True, "data": [f.as_json() for f in chunk],
                              "additional_data": {"next_cursor": nxt}})

    # -- admin: what a CRM user does, over HTTP ---------------------------------------
    def admin(self, request: Request, action: str) -> Response | None:
        parts = action.split("/")
        try:
            if parts[0] == "records" and len(parts) >= 2:
                entity = parts[1]
                with self.lock:
                    if request.method == "POST" and len(parts) == 2:
                        payload = request.get_json(force=True)
                        rid = self.user_create(entity, payload.get("fields", {}))
                        return json_response({"id": rid})
                    record_id = int(parts[2])
                    if request.method == "PATCH":
                        fields = request.get_json(force=True).get("fields", {})
                        self.user_update(entity, record_id, fields)
                    elif request.method == "DELETE":
                        self.user_delete(entity, record_id)
                    return json_response(self.company.record(entity, record_id).data())
            if parts[0] == "rotate_token" and request.method == "POST":
                return json_response({"api_token": self.rotate_token()})
            if parts[0] == "budget":
                if request.method in ("POST", "PATCH"):
                    self.limits.set_spent(int(request.get_json(force=True)["spent"]))
                return json_response({"spent_today": self.limits.spent_today,
                                      "daily_tokens": self.limits.daily_tokens})
            if parts[0] == "fixture" and request.method == "POST":
                self.load_fixture(request.get_json(force=True))
                return json_response({"loaded": True})
        except (InputError, KeyError, ValueError, NotFoundError, IndexError) as exc:
            return json_response({"error": str(exc)}, 400)
        return None

    # -- Python API for tests and the demo (names and labels, not keys and ids) -------
    def user_create(self, entity: str, fields: dict[str, Any], **times: int) -> int:
        with self.lock:
            values = self.company.api_values(entity, fields)
            return self.company.create(entity, values, **times).id

    def user_update(self, entity: str, record_id: int, fields: dict[str, Any]) -> None:
        with self.lock:
            self.company.update(entity, record_id, self.company.api_values(entity, fields))

    def user_delete(self, entity: str, record_id: int) -> None:
        with self.lock:
            self.company.delete(entity, record_id)

    def record_data(self, entity: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            return self.company.record(entity, record_id).data()

    def field_key(self, entity: str, name: str) -> str:
        fdef = self.company.fields.custom_by_name(entity, name)
        if fdef is None:
            raise KeyError(f"{entity}: no custom field named {name!r}")
        return fdef.field_code

    def load_fixture(self, data: dict[str, Any]) -> None:
        from sandbox.pipedrive.seed import load_fixture

        with self.lock:
            load_fixture(self.company, data)


def _blob(rec: StoredRecord, custom_keys: frozenset[str] | None) -> bytes:
    if custom_keys is None:
        return rec.blob
    data = rec.data()
    data["custom_fields"] = {
        k: v for k, v in data.get("custom_fields", {}).items() if k in custom_keys
    }
    return orjson.dumps(data)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
