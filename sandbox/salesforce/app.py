"""The Salesforce sandbox app: OAuth token endpoint and the REST resources clients use."""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, SandboxApp, json_response
from sandbox.salesforce.auth import OAuthError, Session, TokenIssuer, new_connected_app
from sandbox.salesforce.org import INTEGRATION_USERNAME, Org, WriteError
from sandbox.salesforce.queries import QueryEngine, batch_size
from sandbox.salesforce.seed import load_fixture_into, seed_org
from sandbox.salesforce.soql import SoqlError, format_datetime
from sandbox.salesforce.writes import RecordWrites, sf_error
from sandbox.world import CrmSeed

LATEST_VERSION = "68.0"
OLDEST_VERSION = 31.0
_VERSION = re.compile(r"^\d{2}\.0$")
DATA = "/services/data/v<version>"


class SalesforceSandbox(RecordWrites, SandboxApp):
    """One Salesforce org. Construct, then :func:`sandbox.salesforce.serve_https` it."""

    vendor = "salesforce"

    def __init__(self, *, faults: Faults | None = None, daily_limit: int = 100_000,
                 delete_window: timedelta = timedelta(days=15),
                 session_seconds: float = 7200.0, client_credentials: bool = True,
                 jwt_certificate: bytes | None = None) -> None:
        """``jwt_certificate``: the X.509 certificate (or public key) PEM the connected app
        verifies JWT assertions with; by default the sandbox makes a key pair and hands the
        private key out in ``credentials()``."""
        self.org = Org(delete_window=delete_window)
        super().__init__(faults=faults)
        self.lock = self.org.lock
        self.engine = QueryEngine(self.org)
        self.daily_limit = daily_limit
        self._calls: collections.deque[float] = collections.deque()
        self.connected_app = new_connected_app(
            self.org.integration_user if client_credentials else None)
        if jwt_certificate is not None:
            self.connected_app = replace(self.connected_app, certificate_pem=jwt_certificate,
                                         private_key_pem=None)
        self.issuer = TokenIssuer(
            org_id=self.org.org_id, app=self.connected_app,
            usernames={INTEGRATION_USERNAME: self.org.integration_user},
            approved={self.org.integration_user}, session_seconds=session_seconds)
        self.base_url: str | None = None
        self.ca_file: str | None = None
        self._bootstrap_session = self.issuer.issue(self.org.integration_user)
        self.seed_ids: dict[str, str] = {}

    @classmethod
    def from_seed(cls, crm: CrmSeed, *, faults: Faults | None = None,
                  **options: Any) -> SalesforceSandbox:
        """An org holding the seed's users, accounts and opportunities (native fields)."""
        app = cls(faults=faults, **options)
        app.seed_ids = seed_org(app.org, crm)
        return app

    def load_fixture(self, data: Mapping[str, Any]) -> dict[str, str]:
        """Add native records (format: :mod:`sandbox.salesforce.seed`); returns key -> id."""
        return load_fixture_into(self.org, data)

    def bind(self, base_url: str, ca_file: str | None) -> None:
        """Tell the app where it is served, so credentials() can say so."""
        self.base_url = base_url
        self.ca_file = ca_file

    # -- SandboxApp hooks -------------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        return [
            Rule("/services/oauth2/token", endpoint="token", methods=["POST"]),
            Rule("/services/data", endpoint="versions", methods=["GET"]),
            Rule(f"{DATA}/limits", endpoint="limits", methods=["GET"]),
            Rule(f"{DATA}/query", endpoint="query", methods=["GET"]),
            Rule(f"{DATA}/query/<locator>", endpoint="query_more", methods=["GET"]),
            Rule(f"{DATA}/queryAll", endpoint="query_all", methods=["GET"]),
            Rule(f"{DATA}/queryAll/<locator>", endpoint="query_all_more", methods=["GET"]),
            Rule(f"{DATA}/sobjects", endpoint="describe_global", methods=["GET"]),
            Rule(f"{DATA}/sobjects/<sobject>/describe", endpoint="describe", methods=["GET"]),
            Rule(f"{DATA}/sobjects/<sobject>/deleted", endpoint="deleted", methods=["GET"]),
            Rule(f"{DATA}/sobjects/<sobject>/updated", endpoint="updated", methods=["GET"]),
            Rule(f"{DATA}/sobjects/<sobject>", endpoint="create_row", methods=["POST"]),
            Rule(f"{DATA}/sobjects/<sobject>/<record_id>", endpoint="row",
                 methods=["GET", "PATCH", "DELETE"]),
            Rule(f"{DATA}/composite/sobjects", endpoint="collections", methods=["PATCH"]),
        ]

    def error_server(self) -> Response:
        return sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                        "ErrorId if you contact support: 1790394455-53160 (-1164412465)", 500)

    def error_rate_limited(self) -> Response:
        """Forced rate limiting looks like Salesforce's concurrent long-running request
        limit: the same errorCode as the daily limit, but it clears within seconds."""
        return sf_error("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", 403)

    def error_daily_limit(self) -> Response:
        return sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403)

    def error_token_expired(self) -> Response:
        return sf_error("INVALID_SESSION_ID", "Session expired or invalid", 401)

    def not_found(self, request: Request, exc: HTTPException) -> Response:
        if exc.code == 405:
            return sf_error("METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. "
                            "Allowed are GET,PATCH,DELETE", 405)
        return sf_error("NOT_FOUND", "The requested resource does not exist", exc.code or 404)

    def credentials(self) -> dict[str, Any]:
        app = self.connected_app
        return {
            "vendor": self.vendor,
            "base_url": self.base_url,
            "login_url": self.base_url,
            "instance_url": self.base_url,
            "token_url": f"{self.base_url}/services/oauth2/token" if self.base_url else None,
            "ca_file": self.ca_file,
            "api_version": "66.0",
            "username": INTEGRATION_USERNAME,
            "consumer_key": app.consumer_key,
            "consumer_secret": app.consumer_secret,
            "private_key_pem": (app.private_key_pem or b"").decode(),
            "certificate_pem": app.certificate_pem.decode(),
            "audience": "https://login.salesforce.com",
            "session_id": self._bootstrap_session.token,
            "org_id": self.org.org_id,
        }

    def _dispatch(self, request: Request, environ: dict[str, Any]) -> Response:
        response = super()._dispatch(request, environ)
        if request.path.startswith("/services/data/v") and "Sforce-Limit-Info" not in \
                response.headers:
            response.headers["Sforce-Limit-Info"] = self._usage_header()
        return response

    # -- plumbing ---------------------------------------------------------------------
    def _usage_header(self) -> str:
        return f"api-usage={len(self._calls)}/{self.daily_limit}"

    def _begin(self, request: Request, version: str) -> Session | Response:
        """Version, session and daily-limit checks every REST call goes through."""
        if not _VERSION.match(version):
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        number = float(version)
        if number > float(LATEST_VERSION):
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        if number < OLDEST_VERSION:
            return sf_error("API_DISABLED_FOR_ORG", f"API version {version} is retired", 410)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        session = self.issuer.session(token) if token else None
        if session is None or self.faults.token_expired(session.issued_at):
            return self.error_token_expired()
        now = time.time()
        with self.lock:
            while self._calls and self._calls[0] < now - 86400:
                self._calls.popleft()
            if len(self._calls) >= self.daily_limit:
                return self.error_daily_limit()
            self._calls.append(now)
        return session

    def spend_api_requests(self, count: int) -> None:
        """Other integrations of the org used ``count`` requests of the daily allocation."""
        now = time.time()
        with self.lock:
            self._calls.extend([now] * count)

    def reset_api_usage(self) -> None:
        with self.lock:
            self._calls.clear()

    def admin(self, request: Request, action: str) -> Response | None:
        """``POST /__sandbox/records/<Object>`` creates, ``PATCH .../<id>`` edits,
        ``DELETE .../<id>`` deletes as a user; ``POST /__sandbox/purge`` empties the bin."""
        parts = action.split("/")
        try:
            if parts[0] == "records" and len(parts) == 2 and request.method == "POST":
                new_id = self.org.create(parts[1], dict(request.get_json(force=True)))
                return json_response({"id": new_id}, 201)
            if parts[0] == "records" and len(parts) == 3:
                if request.method == "PATCH":
                    self.org.update(parts[1], parts[2], dict(request.get_json(force=True)))
                    return Response(status=204)
                if request.method == "DELETE":
                    self.org.delete(parts[1], parts[2])
                    return Response(status=204)
            if parts[0] == "purge" and request.method == "POST":
                return json_response({"purged": self.org.purge()})
            if parts[0] == "reset_usage" and request.method == "POST":
                self.reset_api_usage()
                return json_response({"api_usage": 0})
        except (WriteError, KeyError) as exc:
            return json_response({"error": str(exc)}, 400)
        return None

    # -- endpoints --------------------------------------------------------------------
    def token(self, request: Request) -> Response:
        try:
            user_id = self.issuer.grant(request.form.to_dict(),
                                        request.headers.get("Authorization"))
        except OAuthError as exc:
            return json_response({"error": exc.error, "error_description": exc.description},
                                 exc.status)
        session = self.issuer.issue(user_id)
        return json_response(self.issuer.token_response(session, request.host_url.rstrip("/")))

    def versions(self, request: Request) -> Response:
        out = [{"label": _release(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
               for v in range(int(OLDEST_VERSION), int(float(LATEST_VERSION)) + 1)]
        return json_response(out)

    def limits(self, request: Request, version: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        used = len(self._calls)
        return json_response({"DailyApiRequests": {"Max": self.daily_limit,
                                                   "Remaining": self.daily_limit - used}})

    def _query(self, request: Request, version: str, include_deleted: bool) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        soql = request.args.get("q")
        if soql is None:
            return sf_error("MALFORMED_QUERY", "A query string has to be specified", 400)
        batch = batch_size(request.headers.get("Sforce-Query-Options"))
        try:
            body = self.engine.run_body(soql, include_deleted=include_deleted,
                                        version=version, batch=batch)
        except SoqlError as exc:
            return sf_error(exc.code, exc.message, 400)
        return _json_bytes(body)

    def _more(self, request: Request, version: str, locator: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        header = request.headers.get("Sforce-Query-Options")
        try:
            body = self.engine.more_body(locator, version=version,
                                         batch=batch_size(header) if header else None)
        except SoqlError as exc:
            return sf_error(exc.code, exc.message, 400)
        return _json_bytes(body)

    def query(self, request: Request, version: str) -> Response:
        return self._query(request, version, include_deleted=False)

    def query_all(self, request: Request, version: str) -> Response:
        return self._query(request, version, include_deleted=True)

    def query_more(self, request: Request, version: str, locator: str) -> Response:
        return self._more(request, version, locator)

    def query_all_more(self, request: Request, version: str, locator: str) -> Response:
        return self._more(request, version, locator)

    def describe_global(self, request: Request, version: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        with self.lock:
            sobjects = [{k: v for k, v in o.describe(version).items() if k != "fields"}
                        for o in self.org.objects.values()]
        return json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def describe(self, request: Request, version: str, sobject: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        try:
            with self.lock:
                body = self.org.obj(sobject).describe(version)
        except KeyError:
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        return json_response(body)

    def _window(self, request: Request) -> tuple[str, str] | Response:
        start_raw, end_raw = request.args.get("start"), request.args.get("end")
        if not start_raw or not end_raw:
            return sf_error("MISSING_ARGUMENT", "start and end parameters are required", 400)
        try:
            start = _parse_instant(start_raw)
            end = _parse_instant(end_raw)
        except ValueError:
            return sf_error("INVALID_REPLICATION_DATE",
                            "start and end must be ISO 8601 date-times", 400)
        if end - start <= timedelta(minutes=1):
            return sf_error("INVALID_REPLICATION_DATE",
                            "end must be more than one minute after start", 400)
        # Salesforce ignores seconds: the window runs whole minutes.
        return (format_datetime(start.replace(second=0, microsecond=0)),
                format_datetime(end.replace(second=0, microsecond=0)))

    def _replication(
        self, request: Request, version: str, sobject: str
    ) -> Response | tuple[str, str, str]:
        """getDeleted/getUpdated share their checks: session, window, object name."""
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        window = self._window(request)
        if isinstance(window, Response):
            return window
        try:
            name = self.org.obj(sobject).name
        except KeyError:
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        return name, window[0], window[1]

    def deleted(self, request: Request, version: str, sobject: str) -> Response:
        asked = self._replication(request, version, sobject)
        if isinstance(asked, Response):
            return asked
        name, start, end = asked
        with self.lock:
            self.org.purge_expired()
            rows = [{"id": r["Id"], "deletedDate": r["SystemModstamp"]}
                    for r in self.org.tables[name].values()
                    if r["IsDeleted"] and start <= r["SystemModstamp"] <= end]
            earliest = self.org.earliest_available.get(name, self.org.created_at)
        rows.sort(key=lambda r: (r["deletedDate"], r["id"]))
        return json_response({"deletedRecords": rows, "earliestDateAvailable": earliest,
                              "latestDateCovered": end})

    def updated(self, request: Request, version: str, sobject: str) -> Response:
        asked = self._replication(request, version, sobject)
        if isinstance(asked, Response):
            return asked
        name, start, end = asked
        with self.lock:
            ids = sorted(r["Id"] for r in self.org.tables[name].values()
                         if not r["IsDeleted"] and start <= r["SystemModstamp"] <= end)
        return json_response({"ids": ids, "latestDateCovered": end})


def _json_bytes(body: bytes) -> Response:
    return Response(body, status=200, content_type="application/json;charset=UTF-8")


def _parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _release(version: int) -> str:
    """Release name of an API version: three releases a year, v59.0 was Winter '24."""
    steps = version - 59
    return f"{('Winter', 'Spring', 'Summer')[steps % 3]} '{24 + steps // 3}"
