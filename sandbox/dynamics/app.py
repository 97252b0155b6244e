"""The Dataverse sandbox app: routes, authentication, service protection and reads."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, SandboxApp
from sandbox.dynamics.auth import AppRegistration, Authority, TokenError, make_certificate
from sandbox.dynamics.metadata import MetadataEndpoints
from sandbox.dynamics.odata import (
    ODataError,
    annotation_wanted,
    compile_filter,
    decode_deltatoken,
    decode_skiptoken,
    encode_deltatoken,
    encode_skiptoken,
    parse_orderby,
    parse_prefer,
)
from sandbox.dynamics.schema import CHOICE_TYPES, LOOKUP_TYPES, TableDef, default_tables
from sandbox.dynamics.store import Row, Store, Table, utc_now
from sandbox.dynamics.writes import WriteEndpoints
from sandbox.world import CrmSeed

API = "/api/data/v9.2"
MAX_PAGE_SIZE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_NAME = "Microsoft.Dynamics.CRM.associatednavigationproperty"
EXPIRED_VERSION_STAMP = "0x80044352"
FRAGMENT_LIMIT = 300_000  # rendered rows kept across all column selections


class ServiceProtection:
    """Dataverse's per-user request count over a sliding window (default 6000 / 300 s)."""

    def __init__(self, *, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user: str, cost: int) -> tuple[bool, float, int]:
        """(allowed, retry_after_s, remaining) for ``cost`` requests now."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(user, deque())
            total = self._totals.get(user, 0)
            while hits and hits[0][0] <= now - self.window_s:
                total -= hits.popleft()[1]
            if total + cost > self.limit:
                self._totals[user] = total
                wait = (hits[0][0] + self.window_s - now) if hits else self.window_s
                return False, max(1.0, wait), max(0, self.limit - total)
            hits.append((now, cost))
            self._totals[user] = total + cost
            return True, 0.0, self.limit - total - cost


class DynamicsApp(MetadataEndpoints, WriteEndpoints, SandboxApp):
    """One Dataverse environment with its Entra tenant. See the package docstring."""

    vendor = "dynamics"

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        certificate: tuple[str, str] | None = None,
        request_limit: int = 6000,
        window_seconds: float = 300.0,
        delta_token_retention: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = utc_now,
        tables: Iterable[TableDef] | None = None,
    ) -> None:
        super().__init__(faults=faults)
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or f"sbx~{uuid.uuid4().hex}"
        cert_pem, key_pem = certificate or make_certificate()
        self.authority = Authority(tenant_id=self.tenant_id, apps=[AppRegistration(
            self.client_id, self.client_secret, cert_pem, key_pem)])
        self.protection = ServiceProtection(limit=request_limit, window_s=window_seconds)
        self.delta_token_retention = delta_token_retention
        self.delta_tokens_expired_before: datetime | None = None
        self.clock = clock
        self.store = Store(tables or default_tables(), clock=clock)
        self.base_url: str | None = None  # set once served; else taken from each request
        self.organization_id = str(uuid.uuid4())
        # per-row JSON by (table, select, annotations): id -> (versionnumber, bytes)
        self._fragments: dict[tuple[str, tuple[str, ...], str], dict[str, tuple[int, str]]] = {}
        self._fragment_count = 0
        self.app_user_id = self.store.insert("systemuser", {
            "fullname": "# Channel Sync", "applicationid": self.client_id,
            "domainname": f"{self.client_id}@sandbox"})["systemuserid"]

    # -- SandboxApp hooks --------------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        entity = f"{API}/EntityDefinitions(LogicalName='<logical>')"
        return [
            Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="discovery"),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
            Rule(f"{API}/$batch", endpoint="batch", methods=["POST"]),
            Rule(f"{API}/WhoAmI", endpoint="whoami"),
            Rule(f"{API}/EntityDefinitions", endpoint="api_entity_definitions"),
            Rule(entity, endpoint="api_entity_definition"),
            Rule(f"{entity}/Attributes/<cast>", endpoint="api_attribute_cast"),
            Rule(f"{entity}/Attributes(LogicalName='<attribute>')/<cast>",
                 endpoint="api_attribute_cast"),
            Rule(f"{API}/<set_name>(<key>)", endpoint="record",
                 methods=["GET", "PATCH", "DELETE"]),
            Rule(f"{API}/<set_name>", endpoint="collection", methods=["GET", "POST"]),
        ]

    def error_server(self) -> Response:
        return self._error(500, "0x80040216", "An unexpected error occurred.")

    def error_rate_limited(self) -> Response:
        return self._throttled(1.0)

    def error_token_expired(self) -> Response:
        base = self.base_url or ""
        challenge = (f'Bearer error=invalid_token, error_description="Error during token '
                     f'validation!", authorization_uri={base}/{self.tenant_id}/oauth2/authorize,'
                     f' resource_id={base}/')
        return Response(b"", status=401, headers={"WWW-Authenticate": challenge})

    def not_found(self, request: Request, exc: HTTPException) -> Response:
        segment = request.path.rsplit("/", 1)[-1]
        if exc.code == 405:
            return self._error(405, "0x80060888", f"The HTTP verb {request.method} is not "
                                                  f"allowed on '{segment}'.")
        return self._error(exc.code or 404, "0x80060888",
                           f"Resource not found for the segment '{segment}'.")

    def credentials(self) -> dict[str, Any]:
        app = self.authority.apps[self.client_id]
        base = self.base_url
        return {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "certificate_pem": app.certificate_pem,
            "private_key_pem": app.private_key_pem,
            "thumbprint": app.sha1_hex(),
            "authority": f"{base}/{self.tenant_id}" if base else None,
            "environment_url": base,
            "scope": f"{base}/.default" if base else None,
            "api_url": f"{base}{API}/" if base else None,
        }

    # -- plumbing ------------------------------------------------------------------------
    def _base(self, request: Request) -> str:
        return f"{self.base_url or request.host_url.rstrip('/')}{API}"

    def _environment_url(self, request: Request) -> str:
        return self.base_url or request.host_url.rstrip("/")

    def _reply(self, data: Any, status: int = 200, headers: dict[str, str] | None = None
               ) -> Response:
        out = Response(orjson.dumps(data), status=status,
                       content_type="application/json; odata.metadata=minimal")
        out.headers["OData-Version"] = "4.0"
        for name, value in (headers or {}).items():
            out.headers[name] = value
        return out

    def _error(self, status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> Response:
        return self._reply({"error": {"code": code, "message": message}}, status, headers)

    def _odata_error(self, exc: ODataError) -> Response:
        return self._error(exc.status, exc.code, str(exc))

    def _throttled(self, retry_after: float) -> Response:
        limit, window = self.protection.limit, int(self.protection.window_s)
        return self._error(429, "0x80072322",
                           f"Number of requests exceeded the limit of {limit} over time window "
                           f"of {window} seconds.",
                           {"Retry-After": str(math.ceil(retry_after))})

    def _guard(self, request: Request, cost: int = 1) -> Response | None:
        """Bearer token and service protection; ``None`` when the call may proceed."""
        if request.environ.get("dynamics.batched"):
            return None
        header = request.headers.get("Authorization", "")
        grant = self.authority.check(header[7:]) if header.startswith("Bearer ") else None
        if (grant is None or self.faults.token_expired(grant.issued_at)
                or grant.expires_at < time.time()
                or grant.audience.lower() != self._environment_url(request).lower()):
            return self.error_token_expired()
        allowed, retry_after, remaining = self.protection.take(grant.client_id, cost)
        if not allowed:
            return self._throttled(retry_after)
        request.environ["dynamics.remaining"] = remaining
        return None

    def _finish(self, request: Request, response: Response) -> Response:
        remaining = request.environ.get("dynamics.remaining")
        if remaining is not None:
            response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
        return response

    def _table(self, name: str) -> Table:
        table = self.store.by_set.get(name) or self.store.tables.get(name)
        if table is None:
            raise ODataError(f"Resource not found for the segment '{name}'.", status=404)
        return table

    def _table_def(self, logical: str) -> TableDef:
        table = self.store.tables.get(logical)
        if table is None:
            raise ODataError(f"Could not find entity with logical name '{logical}'.",
                             code="0x80040217", status=404)
        return table.definition

    def _all_defs(self) -> list[TableDef]:
        return [t.definition for t in self.store.tables.values()]

    def _api(self, request: Request, handler: Callable[[], Response], cost: int = 1
             ) -> Response:
        denied = self._guard(request, cost)
        if denied is not None:
            return denied
        try:
            with self.lock:
                response = handler()
        except ODataError as exc:
            response = self._odata_error(exc)
        return self._finish(request, response)

    # -- auth endpoints --------------------------------------------------------------------
    def discovery(self, request: Request, tenant: str) -> Response:
        if tenant != self.tenant_id:
            return self._reply({"error": "invalid_tenant", "error_description":
                                f"AADSTS90002: Tenant '{tenant}' not found.",
                                "error_codes": [90002]}, 400)
        return self._reply(self.authority.discovery(self._environment_url(request)))

    def token(self, request: Request, tenant: str) -> Response:
        if tenant != self.tenant_id:
            return self._reply({"error": "invalid_request", "error_description":
                                f"AADSTS90002: Tenant '{tenant}' not found.",
                                "error_codes": [90002]}, 400)
        form = {k: v for k, v in request.form.items()}
        env = self._environment_url(request)
        try:
            body = self.authority.issue(form, base=env, environment_url=env)
        except TokenError as exc:
            return self._reply(exc.body(), exc.status)
        return self._reply(body)

    # -- API endpoints ----------------------------------------------------------------------
    def whoami(self, request: Request) -> Response:
        return self._api(request, lambda: self._reply({
            "@odata.context": f"{self._base(request)}/$metadata"
                              "#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": self.organization_id, "UserId": self.app_user_id,
            "OrganizationId": self.organization_id}))

    def api_entity_definitions(self, request: Request) -> Response:
        return self._api(request, lambda: self.entity_definitions(request))

    def api_entity_definition(self, request: Request, logical: str) -> Response:
        return self._api(request, lambda: self.entity_definition(request, logical))

    def api_attribute_cast(self, request: Request, logical: str, cast: str,
                           attribute: str | None = None) -> Response:
        return self._api(request, lambda: self.attribute_cast(request, logical, cast, attribute))

    def collection(self, request: Request, set_name: str) -> Response:
        if request.method == "POST":
            return self._api(request, lambda: self.create(request, set_name))
        return self._api(request, lambda: self.list_rows(request, set_name))

    # -- reads --------------------------------------------------------------------------------
    def _select(self, request: Request, table: Table) -> list[str]:
        props = table.definition.by_prop()
        text = request.args.get("$select")
        if not text:
            return list(props)
        chosen = [s.strip() for s in text.split(",") if s.strip()]
        for name in chosen:
            if name not in props:
                raise ODataError(f"Could not find a property named '{name}' on type "
                                 f"'Microsoft.Dynamics.CRM.{table.definition.logical}'.")
        pk = table.definition.pk
        return chosen if pk in chosen else [*chosen, pk]

    def render(self, table: Table, row: Row, select: list[str], annotations: str | None
               ) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        if not annotations:
            get = row.get
            for prop in select:
                out[prop] = get(prop)
            return out
        props = table.definition.by_prop()
        for prop in select:
            value = row.get(prop)
            attr = props[prop]
            if value is not None and annotation_wanted(annotations, FORMATTED):
                label = self._formatted(attr.type, attr.options, attr.targets, value)
                if label is not None:
                    out[f"{prop}@{FORMATTED}"] = label
            if attr.type in LOOKUP_TYPES and value is not None:
                if annotation_wanted(annotations, NAV_NAME):
                    out[f"{prop}@{NAV_NAME}"] = attr.schema if attr.custom else attr.logical
                if annotation_wanted(annotations, LOOKUP_NAME):
                    out[f"{prop}@{LOOKUP_NAME}"] = self._lookup_target(attr.targets, value)
            out[prop] = value
        return out

    def _formatted(self, kind: str, options: dict[int, str], targets: tuple[str, ...],
                   value: Any) -> str | None:
        if kind in CHOICE_TYPES:
            return options.get(value)
        if kind == "Boolean":
            return options.get(int(bool(value)), "Yes" if value else "No")
        if kind in LOOKUP_TYPES:
            for target in targets:
                table = self.store.tables.get(target)
                row = table.rows.get(value) if table else None
                if row is not None:
                    return row.get(table.definition.primary_name) if table else None
        return None

    def _lookup_target(self, targets: tuple[str, ...], value: str) -> str:
        for target in targets:
            table = self.store.tables.get(target)
            if table is not None and value in table.rows:
                return target
        return targets[0] if targets else ""

    def list_rows(self, request: Request, set_name: str) -> Response:
        table = self._table(set_name)
        select = self._select(request, table)
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        applied: list[str] = []
        size = MAX_PAGE_SIZE
        if "odata.maxpagesize" in prefer:
            try:
                size = max(1, min(MAX_PAGE_SIZE, int(prefer["odata.maxpagesize"])))
            except ValueError:
                size = MAX_PAGE_SIZE
            applied.append(f"odata.maxpagesize={size}")
        annotations = prefer.get("odata.include-annotations")
        if annotations:
            applied.append(f'odata.include-annotations="{annotations}"')
        tracking = "odata.track-changes" in prefer and table.definition.change_tracking
        if request.args.get("$deltatoken") is not None:
            return self._delta(request, table, select, size, annotations, applied)
        if tracking:
            for option in ("$filter", "$orderby", "$top", "$expand"):
                if option in request.args:
                    raise ODataError(f"The query option {option} is not supported with change "
                                     "tracking.", code="0x80044353")
            applied.append("odata.track-changes")
        return self._query_page(request, table, select, size, annotations, applied, tracking)

    def _query_page(self, request: Request, table: Table, select: list[str], size: int,
                    annotations: str | None, applied: list[str], tracking: bool) -> Response:
        definition = table.definition
        props = definition.by_prop()
        filter_text = request.args.get("$filter", "")
        predicate = compile_filter(filter_text, props, definition.logical) if filter_text else None
        order_text = request.args.get("$orderby", "")
        order = parse_orderby(order_text, props, definition.attributes[definition.pk],
                              definition.logical)
        top = request.args.get("$top")
        if top is not None:
            if not top.isdigit():
                raise ODataError(f"Invalid value '{top}' for $top.")
            size = min(int(top), MAX_PAGE_SIZE)
        result = self.store.query(table, filter_text, predicate, order, order_text)
        start, page_no, baseline = 0, 1, self.store.version
        token = request.args.get("$skiptoken")
        if token:
            cookie = decode_skiptoken(token, order)
            start = self.store.resume_after(result, order.key(cookie.last))
            page_no = cookie.page + 1
            baseline = cookie.baseline if cookie.baseline is not None else baseline
        ids = result.ids[start:start + size]
        rows = [table.rows[i] for i in ids]
        head = {"@odata.context": self._context(request, table, select)}
        tail: dict[str, str] = {}
        more = start + size < len(result.ids) and top is None
        if more:
            cookie_text = encode_skiptoken(order, rows[-1], rows[0], page_no, tracking,
                                           baseline if tracking else None)
            tail["@odata.nextLink"] = self._link(request, {"$skiptoken": cookie_text})
        elif tracking:
            delta = encode_deltatoken(baseline, self.clock())
            tail["@odata.deltaLink"] = self._link(request, {"$deltatoken": delta},
                                                  keep=("$select",))
        body = self._page_body(table, head, rows, select, annotations, tail)
        headers = {"Preference-Applied": ",".join(applied)} if applied else None
        return self._raw_reply(body, headers)

    def _page_body(self, table: Table, head: dict[str, Any], rows: list[Row],
                   select: list[str], annotations: str | None, tail: dict[str, Any]) -> bytes:
        """A collection page assembled from per-row JSON fragments, cached by row version:
        a page of unchanged rows costs a join, not a re-serialisation."""
        key = (table.definition.logical, tuple(select), annotations or "")
        cache = self._fragments.get(key)
        if cache is None or self._fragment_count > FRAGMENT_LIMIT:
            if len(self._fragments) >= 4 or self._fragment_count > FRAGMENT_LIMIT:
                self._fragments.clear()
                self._fragment_count = 0
            cache = self._fragments[key] = {}
        pk = table.definition.pk
        parts: list[str] = []
        for row in rows:
            version = row["versionnumber"]
            hit = cache.get(row[pk])
            if hit is None or hit[0] != version:
                # kept as str: orjson's bytes carry a large spare buffer each
                hit = (version, orjson.dumps(self.render(table, row, select, annotations))
                       .decode())
                self._fragment_count += row[pk] not in cache
                cache[row[pk]] = hit
            parts.append(hit[1])
        out = orjson.dumps(head)[:-1] + b',"value":[' + ",".join(parts).encode() + b"]"
        for name, value in tail.items():
            out += b"," + orjson.dumps(name) + b":" + orjson.dumps(value)
        return out + b"}"

    def _raw_reply(self, body: bytes, headers: dict[str, str] | None = None) -> Response:
        out = Response(body, status=200, content_type="application/json; odata.metadata=minimal")
        out.headers["OData-Version"] = "4.0"
        for name, value in (headers or {}).items():
            out.headers[name] = value
        return out

    def _context(self, request: Request, table: Table, select: list[str], suffix: str = ""
                 ) -> str:
        chosen = request.args.get("$select")
        columns = f"({','.join(select)})" if chosen else ""
        return f"{self._base(request)}/$metadata#{table.definition.set_name}{columns}{suffix}"

    def _link(self, request: Request, extra: dict[str, str],
              keep: tuple[str, ...] | None = None) -> str:
        params = [(k, v) for k, v in request.args.items(multi=True)
                  if k not in ("$skiptoken", "$deltatoken") and (keep is None or k in keep)]
        params += list(extra.items())
        query = urlencode(params, quote_via=quote, safe="$,()'")
        return f"{self._base(request)}/{request.path.rsplit('/', 1)[-1]}?{query}"

    def _delta(self, request: Request, table: Table, select: list[str], size: int,
               annotations: str | None, applied: list[str]) -> Response:
        token = request.args.get("$deltatoken", "")
        try:
            since, issued = decode_deltatoken(token)
        except ValueError:
            since, issued = -1, self.clock()
        oldest_valid = self.clock() - self.delta_token_retention
        if (since < 0 or since > self.store.version or issued < oldest_valid
                or (self.delta_tokens_expired_before is not None
                    and issued <= self.delta_tokens_expired_before)):
            raise ODataError("Version stamp associated with the client has expired. Please "
                             "perform a full sync.", code=EXPIRED_VERSION_STAMP)
        upto, offset = self.store.version, 0
        if request.args.get("$skiptoken"):
            upto_text, _, offset_text = request.args["$skiptoken"].partition(":")
            upto, offset = int(upto_text), int(offset_text)
        changes = self.store.changes_since(table, since, upto)
        page = changes[offset:offset + size]
        deleted_context = f"{self._base(request)}/$metadata#{table.definition.set_name}" \
                          "/$deletedEntity"
        values: list[dict[str, Any]] = []
        for record_id, row in page:
            if row is None:
                values.append({"@odata.context": deleted_context, "id": record_id,
                               "reason": "deleted"})
            else:
                values.append(self.render(table, row, select, annotations))
        body: dict[str, Any] = {
            "@odata.context": self._context(request, table, select, "/$delta"), "value": values}
        if offset + size < len(changes):
            body["@odata.nextLink"] = self._link(
                request, {"$deltatoken": token, "$skiptoken": f"{upto}:{offset + size}"},
                keep=("$select",))
        else:
            body["@odata.deltaLink"] = self._link(
                request, {"$deltatoken": encode_deltatoken(upto, self.clock())},
                keep=("$select",))
        applied.append("odata.track-changes")
        return self._reply(body, headers={"Preference-Applied": ",".join(applied)})

    def record(self, request: Request, set_name: str, key: str) -> Response:
        if request.method == "PATCH":
            return self._api(request, lambda: self.patch(request, set_name, key))
        if request.method == "DELETE":
            return self._api(request, lambda: self.remove(request, set_name, key))
        return self._api(request, lambda: self.retrieve(request, set_name, key))

    def retrieve(self, request: Request, set_name: str, key: str) -> Response:
        table = self._table(set_name)
        record_id = self.parse_key(table, key)
        row = table.rows.get(record_id)
        if row is None:
            raise self.missing(table, record_id)
        select = self._select(request, table)
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        body = {"@odata.context": self._context(request, table, select, "/$entity"),
                **self.render(table, row, select, prefer.get("odata.include-annotations"))}
        return self._reply(body, headers={"ETag": body["@odata.etag"]})

    # -- seeding ----------------------------------------------------------------------------
    @classmethod
    def from_seed(cls, crm: CrmSeed, *, faults: Faults | None = None,
                  **options: Any) -> DynamicsApp:
        """A sandbox holding ``crm``'s users, accounts and deals as Dataverse rows."""
        from sandbox.dynamics.seed import load_seed

        app = cls(faults=faults, **options)
        load_seed(app, crm)
        return app

    def load_fixture(self, data: dict[str, Any]) -> None:
        """Load native rows; format in the package docstring."""
        from sandbox.dynamics.seed import load_fixture

        load_fixture(self, data)
