"""The Salesforce connector: incremental SOQL reads, deletes, describe, batched writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import requests
import structlog
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession
from simple_salesforce.format import format_soql

from connectors.base import (
    BudgetStatus,
    Cursor,
    Entity,
    EntitySchema,
    Page,
    Record,
    RecordUpdate,
    SkippedRecord,
    WriteResult,
)
from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    ConnectorError,
    SchemaDriftError,
    VendorError,
)
from connectors.http import QuotaGovernor, RetryPolicy
from connectors.salesforce.auth import SalesforceToken, TokenSource
from connectors.salesforce.cursor import (
    EPOCH_STAMP,
    ReadPosition,
    content_digest,
    parse_stamp,
    query_sent,
)
from connectors.salesforce.failures import translate
from connectors.salesforce.schema import PathResolver, check_mapping, entity_schema
from connectors.salesforce.shapes import Reshaper, json_default, reshaper, save_result

T = TypeVar("T")
log = structlog.get_logger(__name__)

API_VERSION = "66.0"
MAX_BATCH = 2000  # query batch: default and maximum
MIN_BATCH = 200
MAX_COLLECTION = 200  # sObject Collections records per request
DEFAULT_OBJECTS: Mapping[Entity, str] = {Entity.ACCOUNT: "Account",
                                         Entity.OPPORTUNITY: "Opportunity"}
SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")


class _OrjsonSalesforce(Salesforce):
    """simple-salesforce decodes with OrderedDict hooks by default; orjson is many times
    faster on 2,000-record pages and gives plain dicts. It also sends requests without a
    timeout, so a server that stops answering would hang the cycle: every call gets one."""

    request_timeout_s: float = 120.0
    served: str | None = None  # the last answer's Date header

    def parse_result_to_json(self, result: requests.Response) -> Any:
        return orjson.loads(result.content)

    def _call_salesforce(self, method: str, url: str, name: str = "", retries: int = 0,
                         max_retries: int = 3, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.request_timeout_s)
        response = super()._call_salesforce(method, url, name, retries, max_retries, **kwargs)
        self.served = response.headers.get("Date")
        return response


class SalesforceConnector:
    """One Salesforce org. Tokens come from ``auth`` (JWT bearer, client credentials or a
    fixed session); every REST call is charged to ``quota`` and retried by ``retry``."""

    vendor = "salesforce"

    def __init__(
        self,
        *,
        session: requests.Session,
        auth: TokenSource,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        page_size: int = MAX_BATCH,
        api_version: str = API_VERSION,
        lookback: timedelta = timedelta(minutes=5),  # how long a transaction may run
        delete_window: timedelta = timedelta(days=15),
        objects: Mapping[Entity, str] = DEFAULT_OBJECTS,
        name: str = "salesforce",
        timeout_s: float = 120.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        schema_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        if not MIN_BATCH <= page_size <= MAX_BATCH:
            raise ValueError(f"page_size must be within {MIN_BATCH}..{MAX_BATCH} (Salesforce "
                             f"query batch sizes), got {page_size}")
        self.session = session
        self.auth = auth
        self.retry = retry
        self.quota = quota
        self.page_size = page_size
        self.api_version = api_version
        self.lookback = lookback
        self.delete_window = delete_window
        self.objects = dict(objects)
        self.name = name
        self.timeout_s = timeout_s
        self._clock = clock
        self._client: Salesforce | None = None
        self._log = log.bind(connector=name, vendor=self.vendor)
        self.schema_ttl = schema_ttl
        # object name -> (fetched at, describe body); shared by describe, checks and reads
        self._described: dict[str, tuple[datetime, Mapping[str, Any]]] = {}

    # -- plumbing ---------------------------------------------------------------------
    def _connect(self, token: SalesforceToken) -> Salesforce:
        client = _OrjsonSalesforce(session_id=token.access_token,
                                   instance_url=token.instance_url,
                                   version=self.api_version, session=self.session)
        client.request_timeout_s = self.timeout_s
        return client

    def _sf(self) -> Salesforce:
        if self._client is None:
            self._client = self._connect(self.auth.mint(self.session))
            self._log.info("salesforce_session_opened", instance=self._client.sf_instance)
        return self._client

    def _renew(self) -> Salesforce:
        if not self.auth.renewable:
            raise AuthError(f"{self.name}: the Salesforce session expired or is invalid, and a "
                            "fixed session token cannot be renewed; configure the jwt or "
                            "client_credentials flow")
        self._client = None
        self._log.info("salesforce_session_renewed")
        return self._sf()

    def _call(self, fn: Callable[[Salesforce], T], *, what: str, entity: str = "") -> T:
        """One REST call: charged to the quota, translated errors, one re-mint on 401,
        transient failures retried by the policy."""

        def attempt() -> T:
            self.quota.charge(1)
            client = self._sf()
            try:
                try:
                    return fn(client)
                except SalesforceExpiredSession:
                    client = self._renew()
                    self.quota.charge(1)
                    return fn(client)
            except ConnectorError:
                raise
            except Exception as exc:
                error = translate(exc, what=f"{self.name} {what}", entity=entity)
                if isinstance(error, BudgetExhaustedError) and self.quota.limit is not None:
                    self.quota.observe(used=self.quota.limit)  # the org says it is all spent
                raise error from None
            finally:
                usage = client.api_usage.get("api-usage")
                if usage is not None:
                    self.quota.observe(used=usage.used, limit=usage.total)

        return self.retry.call(attempt, what=f"{self.name} {what}")

    def _object(self, entity: Entity) -> str:
        return self.objects[entity]

    def _describe(self, obj: str) -> Mapping[str, Any]:
        """The object's describe, fetched at most once per ``schema_ttl``."""
        now = self._clock()
        cached = self._described.get(obj)
        if cached is not None and now - cached[0] < self.schema_ttl:
            return cached[1]
        body = self._call(lambda c: c.restful(f"sobjects/{obj}/describe"),
                          what=f"describe {obj}")
        if not isinstance(body, Mapping):
            raise VendorError(f"{self.name}: describe {obj} returned no fields")
        self._described[obj] = (now, body)
        return body

    def forget_schema(self) -> None:
        """Drop cached describes: the next use fetches them again."""
        self._described.clear()

    def _resolver(self) -> PathResolver:
        return PathResolver(self._describe)

    # -- schema -----------------------------------------------------------------------
    def describe(self, entity: Entity) -> EntitySchema:
        """The live schema (always asks Salesforce); reads reuse it for ``schema_ttl``."""
        self._described.pop(self._object(entity), None)
        return entity_schema(entity, self._resolver().body(self._object(entity)))

    def check_mapping(
        self,
        entity: Entity,
        reads: Mapping[str, str | None],
        writes: Mapping[str, tuple[str | None, Sequence[Any]]],
    ) -> list[str]:
        """Problems for ``check-config --online``: missing fields (with a did-you-mean),
        types that do not fit, fields we write that are not updateable, unknown picklist
        values. ``reads``: vendor field -> canonical type; ``writes``: vendor field ->
        (canonical type, vendor values we may write)."""
        return check_mapping(self._resolver(), self._object(entity), reads, writes)

    def _require(self, entity: Entity, obj: str, fields: Sequence[str], *,
                 parents: bool) -> dict[str, str]:
        """Raise SchemaDriftError for fields Salesforce no longer has; return the fields
        asked for in another case than the API name (requested -> API name). Without
        ``parents``, paths through relationships are left to the query: SOQL rejects a
        missing one with INVALID_FIELD before any record, which saves a describe per
        referenced object on every read."""
        resolver = self._resolver()
        missing: list[str] = []
        reasons: list[str] = []
        renames: dict[str, str] = {}
        for name in fields:
            if "." in name and not parents:
                continue
            found, problem = resolver.resolve(obj, name)
            if found is None:
                missing.append(name)
                reasons.append(problem)
            elif "." not in name and found["name"] != name:
                renames[name] = found["name"]
        if missing:
            raise SchemaDriftError(
                f"{self.name}: mapped field(s) missing from Salesforce {obj}: "
                f"{', '.join(missing)} ({'; '.join(reasons)})",
                entity=entity.value, fields=tuple(missing))
        return renames

    def _drifted(self, entity: Entity, obj: str, fields: Sequence[str],
                 error: SchemaDriftError) -> SchemaDriftError:
        """The query named a field that does not exist: the cached describes are stale.
        Describe again (once) so the error names the mapped field, not SOQL's fragment."""
        self.forget_schema()
        try:
            self._require(entity, obj, fields, parents=True)
        except SchemaDriftError as precise:
            return precise
        return error

    # -- reading ----------------------------------------------------------------------
    def read(self, entity: Entity, cursor: Cursor | None,
             fields: Sequence[str]) -> Iterator[Page]:
        obj = self._object(entity)
        renames = self._require(entity, obj, fields, parents=False)
        select = list(SYSTEM_FIELDS)
        chosen = {f.lower() for f in select}
        for name in fields:
            if name.lower() not in chosen:
                chosen.add(name.lower())
                select.append(name)
        reshape = reshaper([f for f in select if "." in f], renames)
        position = ReadPosition.from_cursor(cursor)
        # see .cursor: min(newest delivered, when the last read's first query was sent - lookback)
        start = position.start(self.lookback) if position is not None else None
        if start is not None and self._delete_window_exceeded(obj, start):
            self._log.warning("delete_window_exceeded", entity=entity.value, since=str(start))
            position = None
        full = position is None
        if position is None:
            position = ReadPosition(EPOCH_STAMP)
            soql = format_soql("SELECT {:literal} FROM {:literal} ORDER BY SystemModstamp, Id",
                               ", ".join(select), obj)
        else:
            soql = format_soql(
                "SELECT {:literal} FROM {:literal} WHERE SystemModstamp >= {} "
                "ORDER BY SystemModstamp, Id",
                ", ".join(select), obj, start)
        try:
            yield from self._pages(entity, soql, position, reshape, full=full)
        except SchemaDriftError as exc:
            raise self._drifted(entity, obj, fields, exc) from None

    def _pages(self, entity: Entity, soql: str, position: ReadPosition,
               reshape: Reshaper | None, *, full: bool) -> Iterator[Page]:
        headers = {"Sforce-Query-Options": f"batchSize={self.page_size}"}
        include_deleted = not full
        boundary = position.settled(self.lookback)  # from the previous read's query time
        sent, began = self._clock(), time.monotonic()
        result, served = self._call(lambda c: (c.query(soql, include_deleted=include_deleted,
                                                       headers=headers),
                                                   getattr(c, "served", None)),
                                    what="query", entity=entity.value)
        # anything changed before this and not in the answer started after it less lookback
        position.queried = query_sent(sent, served, time.monotonic() - began)
        while True:
            records, skipped = self._decode(result.get("records") or [], position, reshape,
                                            boundary, full=full)
            done = bool(result.get("done", True))
            if done:
                position.complete(self.lookback)
            position.trim(self.lookback)
            self._log.debug("page_pulled", entity=entity.value, records=len(records),
                            skipped=len(skipped), full_refresh=full)
            yield Page(records=records, cursor=position.cursor(), skipped=skipped,
                       full_refresh=full, complete=done)
            if done:
                return
            next_url = str(result["nextRecordsUrl"])
            result = self._call(lambda c, url=next_url: c.query_more(  # type: ignore[misc]  # bound per page
                url, identifier_is_url=True, headers=headers),
                what="query_more", entity=entity.value)

    def _decode(self, raw: list[dict[str, Any]], position: ReadPosition,
                reshape: Reshaper | None, boundary: str, *,
                full: bool) -> tuple[list[Record], list[SkippedRecord]]:
        records: list[Record] = []
        skipped: list[SkippedRecord] = []
        for rec in raw:
            record_id = rec.get("Id")
            stamp = rec.get("SystemModstamp")
            try:
                modified = parse_stamp(stamp)
            except ValueError:
                skipped.append(SkippedRecord(
                    record_id if isinstance(record_id, str) else None,
                    f"SystemModstamp {stamp!r} is not a Salesforce datetime", rec))
                continue
            if not isinstance(record_id, str) or not record_id:
                skipped.append(SkippedRecord(None, "record without an Id", rec))
                continue
            rec.pop("attributes", None)
            # Stamps are whole seconds: a record changed twice within one second keeps its
            # stamp; a digest of its fields tells a second version from a re-read (.cursor)
            digest = None if full else content_digest(rec)
            if position.delivered_before(record_id, stamp, digest, boundary):  # type: ignore[arg-type]  # parse_stamp proved str
                continue
            if reshape is not None:
                reshape(rec)
            records.append(Record(id=record_id, modified_at=modified, fields=rec,
                                  deleted=rec.get("IsDeleted") is True))
            position.advance(record_id, stamp, digest)  # type: ignore[arg-type]  # parse_stamp proved str
        return records, skipped

    def _delete_window_exceeded(self, obj: str, since: datetime) -> bool:
        """True when deletions since the cursor may be gone from the recycle bin and the
        delete log (getDeleted's earliestDateAvailable is later than where we start)."""
        now = self._clock()
        # getDeleted wants end > start + 1 minute (whole minutes) and no end in the future:
        # ending a minute ago keeps a client clock running ahead of the org's out of trouble.
        end = now - timedelta(minutes=1)
        start = min(since, end - timedelta(minutes=3))
        if start < now - self.delete_window:
            return True
        try:
            body = self._call(lambda c: c.restful(f"sobjects/{obj}/deleted/", params={
                "start": start.isoformat(timespec="seconds"),
                "end": end.isoformat(timespec="seconds")}), what="getDeleted")
        except VendorError as exc:
            if exc.code == "INVALID_REPLICATION_DATE":
                return True
            raise
        earliest = (body or {}).get("earliestDateAvailable")
        return bool(earliest) and parse_stamp(earliest) > start

    # -- writing ----------------------------------------------------------------------
    def write(self, entity: Entity, updates: Sequence[RecordUpdate]) -> Sequence[WriteResult]:
        """sObject Collections, ``allOrNone: false``: one SaveResult per record, in order.
        ``etag`` is not used: Collections have no per-record precondition."""
        obj = self._object(entity)
        results: list[WriteResult] = []
        for start in range(0, len(updates), MAX_COLLECTION):
            chunk = updates[start:start + MAX_COLLECTION]
            payload = orjson.dumps({"allOrNone": False, "records": [
                {"attributes": {"type": obj}, "id": u.id, **u.fields} for u in chunk]},
                default=json_default)
            try:
                answer = self._call(lambda c, body=payload: c.restful(  # type: ignore[misc]  # bound per chunk
                    "composite/sobjects", method="PATCH", data=body),
                    what="composite/sobjects", entity=entity.value)
            except VendorError as exc:
                results += [WriteResult(u.id, ok=False, error=str(exc), code=exc.code)
                            for u in chunk]
                continue
            if not isinstance(answer, list) or len(answer) != len(chunk):
                results += [WriteResult(u.id, ok=False, retryable=True, code="BAD_RESPONSE",
                                        error="Salesforce did not return one SaveResult per "
                                        "record") for u in chunk]
                continue
            results += [save_result(u.id, r) for u, r in zip(chunk, answer, strict=True)]
        failed = sum(not r.ok for r in results)
        self._log.info("records_written", entity=entity.value, records=len(updates),
                       failed=failed)
        return results

    def budget(self) -> BudgetStatus:
        return self.quota.status()

    def close(self) -> None:
        self.session.close()
