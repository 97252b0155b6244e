"""The Pipedrive connector (API v2 over plain requests): incremental reads on ``update_time``,
deleted deals via ``status=deleted``, organization deletions by periodic full reads, and one
PATCH per record.

Deletions: deals have a delete feed (``status=deleted``, 30 days); organizations have none,
so their ids are reconciled. While a company's organizations fit in one page (``page_size``,
500 by default) the cursor keeps their ids and every incremental read lists them all, which
costs the same one call as an ``updated_since`` read; vanished ids come back as deleted
records. Beyond one page, every ``org_reconcile_every`` (default 24 h, counted from the last
complete full read) the organization read is a full read (``Page.full_refresh``) and the sync
layer retires the organizations it did not return. Deals get a full read when their delete
feed was last read longer ago than ``deleted_window`` (29 days, inside Pipedrive's 30). A full
read that did not complete is started again on the next read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import structlog

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
from connectors.errors import SchemaDriftError, VendorError
from connectors.http import Pacer, QuotaGovernor, RetryPolicy
from connectors.pipedrive.cursor import Feed, IdTally, ReadPosition, dump
from connectors.pipedrive.schema import (
    FIELDS_PATH,
    OBJECTS,
    EncodeError,
    EntityFields,
    RowDecoder,
    check_mapping,
    patch_body,
)
from connectors.pipedrive.transport import (
    COST_FIELDS,
    COST_LIST,
    COST_UPDATE,
    PipedriveHttp,
    Reply,
)

log = structlog.get_logger(__name__)

MAX_PAGE = 500
MAX_CUSTOM_FIELDS_PARAM = 15  # the list endpoints accept at most 15 custom field keys
_WRITE_CODES = {400: "validation_failed", 403: "forbidden", 404: "not_found", 410: "not_found"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PipedriveConnector:
    """One Pipedrive company (one API token)."""

    vendor = "pipedrive"

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        api_token: str,
        retry: RetryPolicy,
        quota: QuotaGovernor,
        pacer: Pacer | None = None,
        page_size: int = MAX_PAGE,
        lookback: timedelta = timedelta(seconds=5),
        org_reconcile_every: timedelta = timedelta(hours=24),
        deleted_window: timedelta = timedelta(days=29),
        timeout: float = 60.0,
        connection: str = "pipedrive",
        clock: Callable[[], datetime] = _utc_now,
        schema_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE}")
        self._session = session
        self._http = PipedriveHttp(
            session=session, base_url=base_url, api_token=api_token, retry=retry,
            quota=quota, pacer=pacer or Pacer(), timeout=timeout, connection=connection,
        )
        self._quota = quota
        self.page_size = page_size
        self.connection = connection
        self._lookback_s = max(0, int(lookback.total_seconds()))
        self._reconcile_s = org_reconcile_every.total_seconds()
        self._deleted_window_s = deleted_window.total_seconds()
        self._clock = clock
        self._fields: dict[Entity, EntityFields] = {}
        self.schema_ttl = schema_ttl
        self._fields_at: dict[Entity, datetime] = {}
        # entity -> {custom key: field name} a read from cached fields has yet to see
        self._unconfirmed: dict[Entity, dict[str, str]] = {}

    # -- schema -----------------------------------------------------------------------
    def fields_of(self, entity: Entity, *, refresh: bool = True) -> EntityFields:
        """The company's fields now (``refresh``) or as last loaded."""
        if not refresh and entity in self._fields:
            return self._fields[entity]
        items: list[Mapping[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": MAX_PAGE, **({"cursor": cursor} if cursor else {})}
            reply = self._http.call("GET", FIELDS_PATH[entity], cost=COST_FIELDS, params=params)
            body = self._ok_body(reply, FIELDS_PATH[entity])
            items.extend(body.get("data") or ())
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
        try:
            self._fields[entity] = EntityFields.parse(entity, items)
            self._fields_at[entity] = self._clock()
        except (KeyError, TypeError, AttributeError) as exc:
            raise VendorError(f"pipedrive {FIELDS_PATH[entity]}: unreadable field metadata "
                              f"({type(exc).__name__}: {exc})") from exc
        return self._fields[entity]

    def describe(self, entity: Entity) -> EntitySchema:
        return self.fields_of(entity).schema()

    def check_mapping(
        self,
        entity: Entity,
        reads: Mapping[str, str | None],
        writes: Mapping[str, tuple[str | None, Sequence[Any]]],
    ) -> list[str]:
        """For ``check-config --online``: missing fields (with a did-you-mean), types that do
        not fit, fields we write that API v2 cannot write, option labels the field lacks,
        and custom field names used twice."""
        return check_mapping(self.fields_of(entity), reads, writes)

    # -- reading ----------------------------------------------------------------------
    def read(self, entity: Entity, cursor: Cursor | None, fields: Sequence[str]) -> Iterator[Page]:
        loaded = self._fields_at.get(entity)
        cached = loaded is not None and self._clock() - loaded < self.schema_ttl
        meta = self.fields_of(entity, refresh=not cached)
        if cached and self._drift(meta, fields) is not None:
            meta = self.fields_of(entity)  # perhaps created since the cache was filled
            cached = False
        problem = self._drift(meta, fields)
        if problem is not None:
            raise SchemaDriftError(f"pipedrive {OBJECTS[entity]}: mapped field(s) {problem[0]}",
                                   entity=entity.value, fields=problem[1])
        if cached:
            self._unconfirmed[entity] = {meta.by_name[n].code: n for n in fields
                                         if meta.by_name[n].custom}
        else:
            self._unconfirmed.pop(entity, None)
        names = list(dict.fromkeys(fields))
        if entity is Entity.OPPORTUNITY and "org_id" not in names:
            names.append("org_id")  # the association to the account
        plan = RowDecoder(meta, names)
        params: dict[str, Any] = {"limit": self.page_size, "sort_by": "update_time",
                                  "sort_direction": "asc"}
        codes = sorted({meta.by_name[n].code for n in names if meta.by_name[n].custom})
        if codes and len(codes) <= MAX_CUSTOM_FIELDS_PARAM:
            params["custom_fields"] = ",".join(codes)
        position = ReadPosition.parse(cursor, with_deleted=entity is Entity.OPPORTUNITY)
        if position is None or self._needs_full(entity, position):
            yield from self._full_read(entity, plan, params, position)
        else:
            yield from self._incremental_read(entity, plan, params, position)

    @staticmethod
    def _drift(meta: EntityFields, fields: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
        missing = tuple(f for f in fields if f not in meta.by_name)
        if missing:
            return f"missing: {', '.join(missing)}", missing
        ambiguous = tuple(f for f in fields if f in meta.ambiguous)
        if ambiguous:
            return f"name used by several custom fields: {', '.join(ambiguous)}", ambiguous
        return None

    def _confirm_fields(self, entity: Entity, data: Sequence[Any]) -> None:
        """The first page of a read from cached fields: a custom field key that no record
        carries may be a deleted field (the list ignores unknown keys and omits empty
        values alike). Ask the fields API once, and stop before the page is delivered if a
        mapped field is gone. Costs nothing while every key shows up."""
        pending = self._unconfirmed.pop(entity, None)
        if not pending:
            return
        seen: set[str] = set()
        for raw in data:
            custom = raw.get("custom_fields") if isinstance(raw, dict) else None
            if isinstance(custom, dict):
                seen.update(custom)
        if all(code in seen for code in pending):
            return
        meta = self.fields_of(entity)
        names = list(pending.values())
        problem = self._drift(meta, names)
        if problem is not None:
            raise SchemaDriftError(f"pipedrive {OBJECTS[entity]}: mapped field(s) {problem[0]}",
                                   entity=entity.value, fields=problem[1])
        moved = tuple(n for c, n in pending.items() if meta.by_name[n].code != c)
        if moved:  # deleted and re-created under the same name: a new key, old values gone
            raise SchemaDriftError(f"pipedrive {OBJECTS[entity]}: custom field(s) re-created "
                                   f"with a new key: {', '.join(moved)}",
                                   entity=entity.value, fields=moved)

    def _needs_full(self, entity: Entity, position: ReadPosition) -> bool:
        now = self._clock().timestamp()
        if position.full_pending:
            return True
        if entity is Entity.ACCOUNT:
            return position.full_at is None or now - position.full_at >= self._reconcile_s
        since = position.deleted.since if position.deleted else None
        return since is None or now - since > self._deleted_window_s

    def _full_read(
        self, entity: Entity, plan: RowDecoder, params: dict[str, Any],
        old: ReadPosition | None,
    ) -> Iterator[Page]:
        started = self._clock().timestamp()
        live = Feed()
        deleted = Feed() if entity is Entity.OPPORTUNITY else None
        tally = IdTally(None, self.page_size) if entity is Entity.ACCOUNT else None
        first_server: int | None = None
        for records, skipped, last, server_time in self._pages(entity, params, live, plan,
                                                               dedupe=False, tally=tally):
            first_server = first_server if first_server is not None else server_time
            floor = first_server - 1 if first_server is not None else None
            cursor = dump(
                live=live, live_since=live.position(floor if last else None),
                deleted=deleted, deleted_since=floor, lookback_s=self._lookback_s,
                full_at=started if last else (old.full_at if old else None),
                full_pending=not last,
                known_ids=tally.to_json() if tally is not None and last else None,
            )
            self._log_page(entity, records, skipped, full=True)
            yield Page(records=records, cursor=cursor, skipped=skipped, full_refresh=True,
                       complete=last)

    def _incremental_read(
        self, entity: Entity, plan: RowDecoder, params: dict[str, Any],
        position: ReadPosition,
    ) -> Iterator[Page]:
        if entity is Entity.ACCOUNT and position.known_ids is not None:
            yield from self._reconciling_read(entity, plan, params, position)
            return
        live, deleted = position.live, position.deleted

        def cursor(live_since: int | None, deleted_since: int | None) -> dict[str, Any]:
            return dump(live=live, live_since=live_since, deleted=deleted,
                        deleted_since=deleted_since, full_at=position.full_at,
                        full_pending=False, lookback_s=self._lookback_s)

        deleted_since = deleted.since if deleted else None
        if deleted is not None:
            sweep = {**params, "status": "deleted"}
            since = deleted.query_since(self._lookback_s)
            if since is not None:
                sweep["updated_since"] = _rfc3339(since)
            first: int | None = None
            for records, skipped, last, server_time in self._pages(entity, sweep, deleted, plan,
                                                                   dedupe=True, deleted=True):
                first = first if first is not None else server_time
                if last:
                    deleted_since = deleted.position(first - 1 if first is not None else None)
                else:
                    deleted_since = deleted.position()
                if records or skipped:
                    self._log_page(entity, records, skipped, full=False, deleted=True)
                    yield Page(records=records, cursor=cursor(live.since, deleted_since),
                               skipped=skipped)
        since = live.query_since(self._lookback_s)
        live_params = {**params, **({"updated_since": _rfc3339(since)} if since else {})}
        first_live: int | None = None
        for records, skipped, last, server_time in self._pages(entity, live_params, live, plan,
                                                               dedupe=True):
            first_live = first_live if first_live is not None else server_time
            floor = first_live - 1 if last and first_live is not None else None
            self._log_page(entity, records, skipped, full=False)
            yield Page(records=records, cursor=cursor(live.position(floor), deleted_since),
                       skipped=skipped, complete=last)

    def _reconciling_read(
        self, entity: Entity, plan: RowDecoder, params: dict[str, Any], position: ReadPosition,
    ) -> Iterator[Page]:
        """List every organization (one call while they fit a page), deliver those changed
        since the cursor, and report known ids that are gone as deleted records."""
        live = position.live
        oldest = live.query_since(self._lookback_s)
        tally = IdTally(position.known_ids, self.page_size)
        first: int | None = None
        for records, skipped, last, server_time in self._pages(
            entity, params, live, plan, dedupe=True, tally=tally, oldest=oldest
        ):
            first = first if first is not None else server_time
            known = position.known_ids
            if last:
                when = datetime.fromtimestamp(server_time, UTC) if server_time else self._clock()
                records = records + [
                    Record(id=str(i), modified_at=when, fields={}, deleted=True)
                    for i in tally.gone()
                ]
                known = tally.to_json()
            floor = first - 1 if last and first is not None else None
            cursor = dump(live=live, live_since=live.position(floor), deleted=None,
                          deleted_since=None, full_at=position.full_at, full_pending=False,
                          lookback_s=self._lookback_s, known_ids=known)
            self._log_page(entity, records, skipped, full=False)
            yield Page(records=records, cursor=cursor, skipped=skipped, complete=last)

    def _pages(
        self, entity: Entity, params: dict[str, Any], feed: Feed,
        plan: RowDecoder, *, dedupe: bool, deleted: bool = False,
        tally: IdTally | None = None, oldest: int | None = None,
    ) -> Iterator[tuple[list[Record], list[SkippedRecord], bool, int | None]]:
        path = f"/api/v2/{OBJECTS[entity]}"
        next_cursor: str | None = None
        while True:
            query = {**params, **({"cursor": next_cursor} if next_cursor else {})}
            reply = self._http.call("GET", path, cost=COST_LIST, params=query)
            body = self._ok_body(reply, path)
            data = body.get("data") or ()
            if data and entity in self._unconfirmed:
                self._confirm_fields(entity, data)
            if tally is not None:
                for raw in data:
                    if isinstance(raw, dict) and isinstance(raw.get("id"), int):
                        tally.add(raw["id"])
            records, skipped = self._decode(data, feed, plan, reply.server_time,
                                            dedupe=dedupe, deleted=deleted, oldest=oldest)
            feed.prune(self._lookback_s)
            next_cursor = (body.get("additional_data") or {}).get("next_cursor")
            yield records, skipped, not next_cursor, reply.server_time
            if not next_cursor:
                return

    @staticmethod
    def _decode(
        data: Sequence[Any], feed: Feed, plan: RowDecoder,
        server_time: int | None, *, dedupe: bool, deleted: bool, oldest: int | None = None,
    ) -> tuple[list[Record], list[SkippedRecord]]:
        records: list[Record] = []
        skipped: list[SkippedRecord] = []
        stamps: dict[str, tuple[datetime, int]] = {}  # pages share seconds: parse each once
        for raw in data:
            try:
                record_id = raw["id"]
                text = raw["update_time"]
                known = stamps.get(text)
                if known is None:
                    moment = datetime.fromisoformat(text)
                    if moment.tzinfo is None:
                        moment = moment.replace(tzinfo=UTC)
                    known = stamps[text] = (moment, int(moment.timestamp()))
                modified, stamp = known
                values = plan(raw)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                rid = raw.get("id") if isinstance(raw, dict) else None
                skipped.append(SkippedRecord(
                    id=None if rid is None else str(rid), payload=raw,
                    reason=f"undecodable record ({type(exc).__name__}: {exc}); update_time="
                           f"{raw.get('update_time') if isinstance(raw, dict) else None!r}",
                ))
                continue
            if dedupe and feed.already_delivered(record_id, stamp):
                continue
            if oldest is not None and stamp < oldest:
                continue  # listed for the id reconciliation only: unchanged since the cursor
            feed.delivered(record_id, stamp, server_time)
            records.append(Record(id=str(record_id), modified_at=modified, fields=values,
                                  deleted=deleted or bool(raw.get("is_deleted"))))
        return records, skipped

    def _ok_body(self, reply: Reply, path: str) -> dict[str, Any]:
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict) or body.get("success") is False:
            error = body.get("error") if isinstance(body, dict) else None
            raise VendorError(f"pipedrive GET {path}: HTTP {reply.status}: {error or body!r}",
                              status=reply.status)
        return body

    def _log_page(self, entity: Entity, records: Sequence[Record],
                  skipped: Sequence[SkippedRecord], *, full: bool, deleted: bool = False) -> None:
        log.info("page_pulled", connector=self.connection, vendor=self.vendor,
                 entity=entity.value, records=len(records), skipped=len(skipped),
                 full_refresh=full, deleted_feed=deleted)

    # -- writing ----------------------------------------------------------------------
    def write(self, entity: Entity, updates: Sequence[RecordUpdate]) -> Sequence[WriteResult]:
        """One PATCH per record (Pipedrive has no batch update). ``etag`` is ignored:
        Pipedrive offers no conditional update, and checking first would double the calls."""
        meta = self.fields_of(entity, refresh=False)
        results: list[WriteResult] = []
        for update in updates:
            results.append(self._write_one(entity, meta, update))
        failed = sum(not r.ok for r in results)
        log.info("records_written", connector=self.connection, vendor=self.vendor,
                 entity=entity.value, written=len(results) - failed, failed=failed)
        return results

    def _write_one(self, entity: Entity, meta: EntityFields, update: RecordUpdate) -> WriteResult:
        if not update.fields:
            return WriteResult(id=update.id, ok=True)
        try:
            record_id = int(update.id)
            body = patch_body(meta, update.fields)
        except EncodeError as exc:
            return WriteResult(id=update.id, ok=False, error=str(exc), code="invalid_value")
        except ValueError:
            return WriteResult(id=update.id, ok=False, code="invalid_id",
                               error=f"not a Pipedrive id: {update.id!r}")
        path = f"/api/v2/{OBJECTS[entity]}/{record_id}"
        reply = self._http.call("PATCH", path, cost=COST_UPDATE, json=body)
        if reply.status == 200 and isinstance(reply.body, dict) and reply.body.get("success"):
            return WriteResult(id=update.id, ok=True)
        error = reply.body.get("error") if isinstance(reply.body, dict) else None
        if reply.status == 400 and "unknown" in str(error):
            self._fields_at.pop(entity, None)  # a field is gone: the next read asks again
        return WriteResult(id=update.id, ok=False, error=str(error or f"HTTP {reply.status}"),
                           code=_WRITE_CODES.get(reply.status, f"http_{reply.status}"))

    # -- the rest ---------------------------------------------------------------------
    def budget(self) -> BudgetStatus:
        return self._quota.status()

    def close(self) -> None:
        self._session.close()


def _rfc3339(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
