"""The HubSpot connector: companies and deals through a private-app token.

Reads are incremental CRM searches on ``hs_lastmodifieddate`` plus an archived sweep for
deletes (see :mod:`connectors.hubspot.reading`). Deals carry a synthetic field,
``associatedcompanyid``: the id of the deal's primary company (association type 5, else the
first associated company), read with one Associations v4 batch call per 1,000 deals and
only when the caller asks for that field. Writes are batch updates of at most 100 records;
a 207 answer is mapped back to each record through ``objectWriteTraceId``. All HTTP goes
through :class:`connectors.hubspot.api.HubSpotApi`, the only module that knows HubSpot's
paths (the v3/v4 ones retire in September 2027).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from hubspot import HubSpot

from connectors.base import (
    BudgetStatus,
    Cursor,
    Entity,
    EntitySchema,
    JSONValue,
    Page,
    RecordUpdate,
    WriteResult,
    require_fields,
)
from connectors.errors import SchemaDriftError, TransientError
from connectors.http import Pacer, QuotaGovernor, RetryPolicy
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.reading import HubSpotReader
from connectors.hubspot.schema import (
    ASSOCIATED_COMPANY,
    check_mapping,
    field_info,
    synthetic_company_field,
)

log = structlog.get_logger(__name__)

OBJECTS: dict[Entity, str] = {Entity.ACCOUNT: "companies", Entity.OPPORTUNITY: "deals"}
SEARCH_PAGE_MAX = 200
BATCH_UPDATE_MAX = 100
_MISSING_PROPERTY = "PROPERTY_DOESNT_EXIST"  # a batch error's subCategory
RETRYABLE_CATEGORIES = frozenset({"RATE_LIMITS", "INTERNAL_ERROR", "TIMEOUT", "LOCKED"})


class HubSpotConnector:
    """One HubSpot account (portal). Several instances may run side by side."""

    vendor = "hubspot"

    def __init__(
        self,
        *,
        client: HubSpot,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        page_size: int = SEARCH_PAGE_MAX,
        pacer: Pacer | None = None,
        burst_share: float = 1.0,
        search_per_second: float | None = 4.0,
        index_lag: timedelta = timedelta(minutes=2),
        deal_full_read_every: timedelta | None = timedelta(days=1),
        connection: str = "hubspot",
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        schema_ttl: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= page_size <= SEARCH_PAGE_MAX:
            raise ValueError(f"page_size must be between 1 and {SEARCH_PAGE_MAX}")
        if not 0 < burst_share <= 1:
            raise ValueError("burst_share must be in (0, 1]")
        self.connection = connection
        self.page_size = page_size
        # How late search may see a change (HubSpot: seconds) plus any clock skew: the next
        # read starts that long before the previous one's first query (see .reading).
        self.index_lag_ms = int(index_lag.total_seconds() * 1000)
        # Moving a deal to another company changes no property, so no modified date: deals
        # are read in full this often to see their companies (see .reading).
        self.deal_full_every_ms = (None if deal_full_read_every is None
                                   else int(deal_full_read_every.total_seconds() * 1000))
        self._wall_clock = wall_clock
        self.quota = quota
        self.api = HubSpotApi(
            client=client, retry=retry, quota=quota, pacer=pacer or Pacer(sleep=sleep),
            search_pacer=Pacer(reserve=0, sleep=sleep) if search_per_second else None,
            search_per_second=search_per_second, burst_share=burst_share,
            timeout_s=timeout_s, connection=connection,
        )
        self.log = log.bind(connector=connection, vendor=self.vendor)
        self.schema_ttl = schema_ttl
        self._clock = clock
        # entity -> (fetched at, schema): the properties API once per TTL, not once per read
        self._schemas: dict[Entity, tuple[float, EntitySchema]] = {}

    # -- schema -------------------------------------------------------------------------------
    def describe(self, entity: Entity) -> EntitySchema:
        """The live schema (always asks HubSpot); reads reuse it for ``schema_ttl``."""
        return self._schema(entity, fresh=True)

    def _schema(self, entity: Entity, *, fresh: bool = False) -> EntitySchema:
        now = self._clock()
        cached = self._schemas.get(entity)
        if cached is not None and not fresh and now - cached[0] < self.schema_ttl.total_seconds():
            return cached[1]
        object_type = OBJECTS[entity]
        fields = {p["name"]: field_info(p) for p in self.api.properties(object_type)
                  if isinstance(p, dict) and p.get("name") and not p.get("archived")}
        if entity is Entity.OPPORTUNITY:
            fields[ASSOCIATED_COMPANY] = synthetic_company_field()
        schema = EntitySchema(entity=entity, object_name=object_type, fields=fields)
        self._schemas[entity] = (now, schema)
        return schema

    def forget_schema(self) -> None:
        """Drop cached schemas: the next read asks the properties API again."""
        self._schemas.clear()

    def check_mapping(
        self,
        entity: Entity,
        reads: Mapping[str, str | None],
        writes: Mapping[str, tuple[str | None, list[str]]],
    ) -> list[str]:
        """``check-config --online``: missing fields (with a did-you-mean), types that do not
        fit, read-only write targets, option values HubSpot does not know."""
        return check_mapping(self.describe(entity), reads, writes)

    # -- reading -------------------------------------------------------------------------------
    def read(self, entity: Entity, cursor: Cursor | None, fields: Sequence[str]) -> Iterator[Page]:
        try:
            require_fields(self._schema(entity), list(fields))
        except SchemaDriftError:  # the cache may predate a new property: ask once more
            require_fields(self._schema(entity, fresh=True), list(fields))
        properties = [f for f in fields if f != ASSOCIATED_COMPANY]
        with_company = entity is Entity.OPPORTUNITY and ASSOCIATED_COMPANY in fields
        reader = HubSpotReader(
            api=self.api,
            object_type=OBJECTS[entity],
            properties=properties,
            with_company=with_company,
            page_size=self.page_size,
            index_lag_ms=self.index_lag_ms,
            full_every_ms=self.deal_full_every_ms if with_company else None,
            wall_clock=self._wall_clock,
        )
        pulled, full_refresh = 0, False
        for page in reader.read(cursor):
            self._check_returned(entity, fields, properties, page)
            pulled += len(page.records)
            full_refresh = page.full_refresh
            self.log.debug("page_pulled", entity=entity.value, records=len(page.records),
                           skipped=len(page.skipped), complete=page.complete)
            yield page
        self.log.info("read_finished", entity=entity.value, records=pulled,
                      full_refresh=full_refresh)

    def _check_returned(self, entity: Entity, fields: Sequence[str], properties: list[str],
                        page: Page) -> None:
        """Search silently leaves out a property that no longer exists (a known one comes
        back, as null when empty): a page whose first live record lacks a requested property
        means the cached schema is stale. Describe again and stop before the page is
        delivered."""
        first = next((r for r in page.records if not r.deleted), None)
        if first is None or not isinstance(first.fields, dict):
            return
        gone = [name for name in properties if name not in first.fields]
        if not gone:
            return
        self.forget_schema()
        require_fields(self._schema(entity, fresh=True), list(fields))
        raise SchemaDriftError(  # listed by the properties API, yet not returned by search
            f"{self.connection}: HubSpot {OBJECTS[entity]} search returned no "
            f"{', '.join(gone)}", entity=entity.value, fields=tuple(gone))

    # -- writing -------------------------------------------------------------------------------
    def write(self, entity: Entity, updates: Sequence[RecordUpdate]) -> Sequence[WriteResult]:
        object_type = OBJECTS[entity]
        results: list[WriteResult | None] = [None] * len(updates)
        for chunk in _chunks(updates):
            inputs = []
            for index in chunk:
                update = updates[index]
                if ASSOCIATED_COMPANY in update.fields:
                    results[index] = WriteResult(
                        id=update.id, ok=False, code="READ_ONLY_VALUE",
                        error=f"{ASSOCIATED_COMPANY} is read from associations, not writable")
                    continue
                inputs.append({"id": update.id, "objectWriteTraceId": str(index),
                               "properties": {k: encode(v) for k, v in update.fields.items()}})
            if not inputs:
                continue
            try:
                status, body = self.api.batch_update(object_type, inputs)
            except TransientError as exc:  # retries spent: leave the rest for a later cycle
                for index, update in enumerate(updates):
                    if results[index] is None:
                        results[index] = WriteResult(id=update.id, ok=False, retryable=True,
                                                     error=str(exc), code="TRANSIENT")
                break
            self._map_batch(updates, inputs, status, body, results)
        done = [r for r in results if r is not None]
        self.log.info("batch_written", entity=entity.value, records=len(done),
                      failed=sum(1 for r in done if not r.ok))
        return done

    def _map_batch(
        self,
        updates: Sequence[RecordUpdate],
        inputs: list[dict[str, Any]],
        status: int,
        body: Mapping[str, Any],
        results: list[WriteResult | None],
    ) -> None:
        index_of_id = {i["id"]: int(i["objectWriteTraceId"]) for i in inputs}
        if status >= 300:  # the whole batch was refused
            for item in inputs:
                index = int(item["objectWriteTraceId"])
                results[index] = WriteResult(
                    id=updates[index].id, ok=False, code=str(body.get("category") or status),
                    error=str(body.get("message") or f"batch refused with {status}"))
            return
        for error in body.get("errors") or []:
            context = error.get("context") or {}
            traces = context.get("objectWriteTraceId") or []
            indexes = [int(t) for t in traces if str(t).isdigit()] or [
                index_of_id[i] for i in context.get("ids") or [] if i in index_of_id]
            category = str(error.get("category") or "")
            if error.get("subCategory") == _MISSING_PROPERTY:
                self.forget_schema()  # a property is gone: the next read describes again
            for index in indexes:
                results[index] = WriteResult(
                    id=updates[index].id, ok=False,
                    error=str(error.get("message") or category),
                    code=str(error.get("subCategory") or category),
                    retryable=category in RETRYABLE_CATEGORIES)
        written = {str(r.get("id")) for r in body.get("results") or []}
        for item in inputs:
            index = int(item["objectWriteTraceId"])
            if results[index] is not None:
                continue
            ok = item["id"] in written or status == 200
            results[index] = WriteResult(
                id=updates[index].id, ok=ok,
                error=None if ok else "HubSpot returned no result for this record")

    # -- the rest --------------------------------------------------------------------------------
    def budget(self) -> BudgetStatus:
        return self.quota.status()

    def close(self) -> None:
        self.api.close()


def encode(value: JSONValue | date | datetime | Decimal) -> str:
    """HubSpot property values are strings; an empty string clears a value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _chunks(updates: Sequence[RecordUpdate]) -> Iterator[list[int]]:
    """Indexes in batches of at most 100 with no id twice (HubSpot refuses duplicates)."""
    chunk: list[int] = []
    ids: set[str] = set()
    for index, update in enumerate(updates):
        if len(chunk) == BATCH_UPDATE_MAX or update.id in ids:
            yield chunk
            chunk, ids = [], set()
        chunk.append(index)
        ids.add(update.id)
    if chunk:
        yield chunk
