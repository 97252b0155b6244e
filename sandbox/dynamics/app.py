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

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, SandboxApp
from sandbox.dynamics.auth import AppRegistration, Authority, TokenError, make_certificate
from sandbox.dynamics.metadata import MetadataEndpoints
from sandbox.dynamics.metadata_query import (
    SchemaJournal,
    parse_parameters,
    retrieve_metadata_changes,
)
from sandbox.dynamics.odata import (
    ODataError,
)
from sandbox.dynamics.reads import API, ReadEndpoints
from sandbox.dynamics.schema import TableDef, default_tables
from sandbox.dynamics.store import Store, Table, utc_now
from sandbox.dynamics.writes import WriteEndpoints
from sandbox.fragments import FragmentCache
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import TlsFiles
from sandbox.world import CrmSeed


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


class DynamicsApp(ReadEndpoints, MetadataEndpoints, WriteEndpoints, SandboxApp):
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
        self.schema_journal = SchemaJournal()
        self.clock = clock
        self.store = Store(tables or default_tables(), clock=clock)
        self.store.lookup_presets = self.lookup_presets
        self.fragments = FragmentCache()
        self.base_url: str | None = None  # set once served; else taken from each request
        self.organization_id = str(uuid.uuid4())
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
            Rule(f"{API}/RetrieveMetadataChanges", endpoint="api_metadata_changes"),
            Rule(f"{API}/RetrieveMetadataChanges()", endpoint="api_metadata_changes"),
            Rule(f"{API}/RetrieveMetadataChanges(<path:params>)",
                 endpoint="api_metadata_changes"),
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

    def admin(self, request: Request, action: str) -> Response | None:
        """``POST records/<set>`` creates, ``PATCH``/``DELETE records/<set>/<id>`` edits or
        deletes a row as a CRM user would (stored values: choices as ints, lookups as
        ``_x_value``); ``POST expire-delta-tokens`` expires every delta token issued so far."""
        parts = action.split("/")
        try:
            if parts == ["expire-delta-tokens"] and request.method == "POST":
                self.expire_delta_tokens()
                return self._reply({"expired_before": str(self.delta_tokens_expired_before)})
            if parts[0] != "records" or len(parts) not in (2, 3):
                return None
            fields = dict(request.get_json(force=True) or {}) if request.data else {}
            if len(parts) == 2 and request.method == "POST":
                record_id = self.create_record(parts[1], fields)
                return self._reply(self.get_record(parts[1], record_id), 201)
            if len(parts) == 3 and request.method == "PATCH":
                self.update_record(parts[1], parts[2], fields)
                return self._reply(self.get_record(parts[1], parts[2]))
            if len(parts) == 3 and request.method == "DELETE":
                self.delete_record(parts[1], parts[2])
                return Response(b"", status=204)
            if len(parts) == 3 and request.method == "GET":
                row = self.get_record(parts[1], parts[2])
                return self._reply(row) if row else self._error(404, "0x80040217", "not found")
        except (KeyError, ODataError, ValueError, TypeError) as exc:
            return self._error(400, "0x80040203", f"admin {action}: {exc}")
        return None

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

    def api_metadata_changes(self, request: Request, params: str | None = None) -> Response:
        def answer() -> Response:
            body = retrieve_metadata_changes(self._all_defs(), self.schema_journal,
                                             parse_parameters(params, request.args),
                                             self.clock())
            return self._reply({"@odata.context": f"{self._base(request)}/$metadata"
                                "#Microsoft.Dynamics.CRM.RetrieveMetadataChangesResponse",
                                **body})

        return self._api(request, answer)

    def collection(self, request: Request, set_name: str) -> Response:
        if request.method == "POST":
            return self._api(request, lambda: self.create(request, set_name))
        return self._api(request, lambda: self.list_rows(request, set_name))

    def record(self, request: Request, set_name: str, key: str) -> Response:
        if request.method == "PATCH":
            return self._api(request, lambda: self.patch(request, set_name, key))
        if request.method == "DELETE":
            return self._api(request, lambda: self.remove(request, set_name, key))
        return self._api(request, lambda: self.retrieve(request, set_name, key))

    def add_option(self, table: str, logical: str, value: int, label: str) -> None:
        """An administrator adds a choice to a column (the column's metadata changes)."""
        with self.lock:
            self._table(table).definition.attributes[logical].options[value] = label
            self.schema_journal.record(self._table(table).definition.logical, "entity")

    # -- seeding and serving ----------------------------------------------------------------
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


def serve_dynamics(app: DynamicsApp, *, tls: TlsFiles, host: str = "127.0.0.1", port: int = 0
                   ) -> RunningSandbox:
    """Serve over HTTPS (msal refuses an http authority) and tell the app its own URL, which
    ``credentials()`` and the discovery document need."""
    running = serve(app, host=host, port=port, tls=tls)
    app.base_url = running.base_url
    return running
