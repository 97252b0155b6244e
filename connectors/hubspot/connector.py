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
from connectors.errors import TransientError
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
        lookback: timedelta = timedelta(minutes=2),
        connection: str = "hubspot",
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= page_size <= SEARCH_PAGE_MAX:
            raise ValueError(f"page_size must be between 1 and {SEARCH_PAGE_MAX}")
        if not 0 < burst_share <= 1:
            raise ValueError("burst_share must be in (0, 1]")
        self.connection = connection
        self.page_size = page_size
        self.lookback_ms = int(lookback.total_seconds() * 1000)
        self.quota = quota
        self.api = HubSpotApi(
            client=client, retry=retry, quota=quota, pacer=pacer or Pacer(sleep=sleep),
            search_pacer=Pacer(reserve=0, sleep=sleep) if search_per_second else None,
            search_per_second=search_per_second, burst_share=burst_share,
            timeout_s=timeout_s, connection=connection,
        )
        self.log = log.bind(connector=connection, vendor=self.vendor)

    # -- schema -------------------------------------------------------------------------------
    def describe(self, entity: Entity) -> EntitySchema:
        object_type = OBJECTS[entity]
        fields = {p["name"]: field_info(p) for p in self.api.properties(object_type)
                  if isinstance(p, dict) and p.get("name") and not p.get("archived")}
        if entity is Entity.OPPORTUNITY:
            fields[ASSOCIATED_COMPANY] = synthetic_company_field()
        return EntitySchema(entity=entity, object_name=object_type, fields=fields)

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
        schema = self.describe(entity)
        require_fields(schema, list(fields))  # schema drift stops us before any data
        reader = HubSpotReader(
            api=self.api,
            object_type=OBJECTS[entity],
            properties=[f for f in fields if f != ASSOCIATED_COMPANY],
            with_company=entity is Entity.OPPORTUNITY and ASSOCIATED_COMPANY in fields,
            page_size=self.page_size,
            lookback_ms=self.lookback_ms,
        )
        pulled = 0
        for page in reader.read(cursor):
            pulled += len(page.records)
            self.log.debug("page_pulled", entity=entity.value, records=len(page.records),
                           skipped=len(page.skipped), complete=page.complete)
            yield page
        self.log.info("read_finished", entity=entity.value, records=pulled,
                      full_refresh=cursor is None)

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
