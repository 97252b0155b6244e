"""The Dataverse connector: requests + msal, OData paging, change tracking, ``$batch``."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import requests
import structlog

from connectors.base import (
    BudgetStatus,
    Cursor,
    Entity,
    EntitySchema,
    Page,
    RecordUpdate,
    WriteResult,
    require_fields,
)
from connectors.dynamics.metadata import TableMeta, check_mapping, metadata_query, parse_table
from connectors.dynamics.reading import Reader, ReadPlan
from connectors.dynamics.wire import EXPIRED_DELTA_CODES, MAX_BATCH, MAX_PAGE_SIZE
from connectors.dynamics.writing import Writer
from connectors.errors import (
    AuthError,
    RateLimitedError,
    SchemaDriftError,
    TransientError,
    VendorError,
)
from connectors.http import (
    TRANSPORT_ERRORS,
    QuotaGovernor,
    RetryPolicy,
    header_int,
    retry_after_seconds,
    retry_worthy,
)

log = structlog.get_logger(__name__)

DEFAULT_TABLES: Mapping[Entity, str] = {Entity.ACCOUNT: "account",
                                        Entity.OPPORTUNITY: "opportunity"}
_BASE_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0",
                 "Accept": "application/json"}
_REMAINING_HEADER = "x-ms-ratelimit-burst-remaining-xrm-requests"


_MISSING_PROPERTY = re.compile(r"Could not find a property named '([^']+)'")


class TokenSource(Protocol):
    def token(self, *, fresh: bool = False) -> str: ...


class DeltaExpiredError(VendorError):
    """The delta token is past the table's change-tracking retention: resync in full."""


class DynamicsConnector:
    """One Dataverse environment (one Application User); see the package docstring."""

    vendor = "dynamics"

    def __init__(
        self,
        *,
        session: requests.Session,
        environment_url: str,
        token_provider: TokenSource,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        page_size: int = MAX_PAGE_SIZE,
        batch_size: int = MAX_BATCH,
        lookback: timedelta = timedelta(minutes=2),
        use_change_tracking: bool = True,
        tables: Mapping[Entity, str] | None = None,
        connection: str = "dynamics",
        timeout_s: float = 120.0,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        schema_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.connection = connection
        self.api_url = f"{environment_url.rstrip('/')}/api/data/v9.2/"
        self.page_size = page_size
        self.batch_size = batch_size
        self.lookback = lookback
        self.use_change_tracking = use_change_tracking
        self._session = session
        self._tokens = token_provider
        self.retry = retry
        self._quota = quota
        self._tables = dict(tables or DEFAULT_TABLES)
        self._timeout = timeout_s
        self._window_s = window_s
        self._clock = clock
        self._window: deque[tuple[float, int]] = deque()
        self._window_total = 0
        self._vendor_used: tuple[float, int] | None = None
        # entity -> (fetched or confirmed at, ServerVersionStamp, metadata); reused by reads,
        # writes and checks for schema_ttl
        self._meta: dict[Entity, tuple[float, str | None, TableMeta]] = {}
        self.schema_ttl = schema_ttl
        self._log = log.bind(connector=connection, vendor=self.vendor)
        self._reader = Reader(self)
        self._writer = Writer(self)

    # -- the Connector protocol ------------------------------------------------------------
    def describe(self, entity: Entity) -> EntitySchema:
        return self.table(entity, fresh=True).schema()

    def read(self, entity: Entity, cursor: Cursor | None, fields: Sequence[str]
             ) -> Iterator[Page]:
        meta = self.table(entity)
        try:
            require_fields(meta.schema(), fields)
        except SchemaDriftError:  # maybe created since the cache was filled: look again
            meta = self.table(entity, fresh=True)
            require_fields(meta.schema(), fields)  # schema drift stops us before any data
        plan = ReadPlan.build(meta, fields)
        try:
            yield from self._reader.read(meta, plan, dict(cursor) if cursor else None)
        except VendorError as exc:
            if exc.status != 400 or _MISSING_PROPERTY.search(str(exc)) is None:
                raise
            raise self._drifted(entity, fields, exc) from None

    def _drifted(self, entity: Entity, fields: Sequence[str], exc: VendorError
                 ) -> SchemaDriftError:
        """Dataverse rejected a column the cached metadata still had: describe again
        (once) so that the error names the mapped field."""
        try:
            require_fields(self.table(entity, fresh=True).schema(), fields)
        except SchemaDriftError as drift:
            return drift
        match = _MISSING_PROPERTY.search(str(exc))
        name = match.group(1) if match else "?"
        return SchemaDriftError(f"{self.connection}: Dataverse no longer knows column "
                                f"'{name}': {exc}", entity=entity.value, fields=(name,))

    def write(self, entity: Entity, updates: Sequence[RecordUpdate]) -> Sequence[WriteResult]:
        if not updates:
            return []
        results = self._writer.write(self.table(entity), updates)
        if any(r.error and _MISSING_PROPERTY.search(r.error) for r in results):
            self._meta.pop(entity, None)  # a column is gone: the next read describes again
        return results

    def budget(self) -> BudgetStatus:
        self._slide_window()
        return self._quota.status()

    def close(self) -> None:
        self._session.close()

    def check_mapping(
        self,
        entity: Entity,
        reads: Mapping[str, str | None],
        writes: Mapping[str, tuple[str | None, list[str]]],
    ) -> list[str]:
        """Problems of mapped fields against the live table (``check-config --online``)."""
        return check_mapping(self.table(entity, fresh=True), reads, writes)

    # -- metadata ------------------------------------------------------------------------------
    def table(self, entity: Entity, *, fresh: bool = False) -> TableMeta:
        """The table's metadata (columns, option sets, change tracking): one
        ``RetrieveMetadataChanges`` call, reused for ``schema_ttl`` unless ``fresh``. Past
        the TTL, one call with the cached ``ServerVersionStamp`` asks what changed since;
        nothing (the usual case) keeps the cache, anything else reads the table again."""
        cached = self._meta.get(entity)
        now = self._clock()
        if cached is not None and not fresh:
            if now - cached[0] < self.schema_ttl.total_seconds():
                return cached[2]
            if cached[1] is not None:
                stamp = self._unchanged_since(entity, cached[1])
                if stamp is not None:
                    self._meta[entity] = (now, stamp, cached[2])
                    return cached[2]
        body = self._metadata(entity)
        logical = self._tables[entity]
        found = [e for e in body.get("EntityMetadata") or [] if e.get("LogicalName") == logical]
        if not found:  # the query's criteria matched no table
            raise SchemaDriftError(f"table '{logical}' does not exist in the environment",
                                   entity=entity.value, fields=(logical,))
        meta = parse_table(entity, found[0])
        self._meta[entity] = (now, body.get("ServerVersionStamp"), meta)
        return meta

    def _metadata(self, entity: Entity, params: str = "", aliases: str = "",
                  what: str = "describe") -> dict[str, Any]:
        query = quote(metadata_query(self._tables[entity]), safe="")
        return self.get_json(f"{self.api_url}RetrieveMetadataChanges(Query=@q{params})"
                             f"?@q={query}{aliases}", what=what)

    def _unchanged_since(self, entity: Entity, stamp: str) -> str | None:
        """The new ServerVersionStamp when neither the table nor its columns changed (or
        were deleted) since ``stamp``; None when they did or the stamp expired."""
        try:
            body = self._metadata(
                entity, ",ClientVersionStamp=@s,DeletedMetadataFilters=@d",
                f"&@s={quote_key(_odata_string(stamp))}"
                "&@d=Microsoft.Dynamics.CRM.DeletedMetadataFilters'Attribute'",
                what="describe_changes")
        except VendorError as exc:
            if exc.code in EXPIRED_DELTA_CODES:  # ExpiredVersionStamp: read it all again
                return None
            raise
        if body.get("EntityMetadata") or (body.get("DeletedMetadata") or {}).get("Count"):
            return None
        new = body.get("ServerVersionStamp")
        return str(new) if new else None

    # -- HTTP ------------------------------------------------------------------------------------
    def get_json(self, url: str, *, what: str, headers: Mapping[str, str] | None = None
                 ) -> dict[str, Any]:
        """GET a JSON body, retried through the policy (a garbled body is transient)."""

        def attempt() -> dict[str, Any]:
            response = self.send("GET", url, what=what, headers=headers)
            self.raise_for_client_error(response, what)
            try:
                data = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise TransientError(f"{what}: response is not valid JSON ({exc})",
                                     status=response.status_code) from exc
            if not isinstance(data, dict):
                raise TransientError(f"{what}: unexpected JSON payload", status=200)
            return data

        return self.retry.call(attempt, what=f"dynamics_{what}")

    def send(self, method: str, url: str, *, what: str, cost: int = 1,
             headers: Mapping[str, str] | None = None, data: bytes | None = None
             ) -> requests.Response:
        """One HTTP exchange: charges the quota, renews the token once on 401, and raises
        the error a retry or the caller acts on. 4xx other than 401/403/429 are returned."""
        self._charge(cost)
        response: requests.Response | None = None
        for renew in (False, True):
            token = self._tokens.token(fresh=renew)
            try:
                response = self._session.request(
                    method, url, data=data, timeout=self._timeout,
                    headers={**_BASE_HEADERS, **(headers or {}),
                             "Authorization": f"Bearer {token}"})
            except TRANSPORT_ERRORS as exc:
                raise TransientError(f"{what}: {type(exc).__name__}") from exc
            self._observe(response)
            if response.status_code != 401:
                break
            self._log.info("dynamics_token_renewed", what=what)
            self._charge(cost)  # the repeated request counts against the window too
        assert response is not None
        status = response.status_code
        if status == 401:
            raise AuthError("Dataverse refused a freshly issued token; check that the app has "
                            "an Application User with a security role in this environment")
        if status == 403:
            raise AuthError(f"Dataverse denied access ({what}): {_error_text(response)}")
        if status == 429:
            raise RateLimitedError(f"{what}: service protection limit: {_error_text(response)}",
                                   retry_after=retry_after_seconds(
                                       response.headers.get("Retry-After")))
        if retry_worthy(status):
            raise TransientError(f"{what}: HTTP {status} {_error_text(response)}", status=status)
        return response

    def raise_for_client_error(self, response: requests.Response, what: str) -> None:
        if response.status_code < 400:
            return
        code, message = _error_parts(response)
        if code in EXPIRED_DELTA_CODES:
            raise DeltaExpiredError(message, status=response.status_code, code=code)
        raise VendorError(f"{what}: HTTP {response.status_code} {code}: {message}",
                          status=response.status_code, code=code)

    def _slide_window(self) -> int:
        now = self._clock()
        while self._window and self._window[0][0] <= now - self._window_s:
            self._window_total -= self._window.popleft()[1]
        used = self._window_total
        if self._vendor_used is not None and now - self._vendor_used[0] < 5:
            used = max(used, self._vendor_used[1])
        self._quota.observe(used=used)
        return used

    def _charge(self, cost: int) -> None:
        """Service protection is a sliding 5-minute window: what leaves it is spendable."""
        self._slide_window()
        self._quota.charge(cost)
        self._window.append((self._clock(), cost))
        self._window_total += cost

    def _observe(self, response: requests.Response) -> None:
        remaining = header_int(response.headers, _REMAINING_HEADER)
        if remaining is not None and remaining >= 0 and self._quota.limit:
            self._vendor_used = (self._clock(), self._quota.limit - remaining)
            self._quota.observe(remaining=remaining)


def _error_parts(response: requests.Response) -> tuple[str, str]:
    try:
        error = orjson.loads(response.content).get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))[:500]
    except (orjson.JSONDecodeError, AttributeError):
        return "", response.text[:200]


def _error_text(response: requests.Response) -> str:
    code, message = _error_parts(response)
    return f"{code} {message}".strip()


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_key(value: str) -> str:
    return quote(value, safe="")
