"""Reading Dataverse tables: change tracking with delta links where the table has it,
else ``modifiedon ge`` windows with a lookback and de-duplication by row version.

Cursor shapes (JSON):

- ``{"mode": "full"}``: restart a full read (mid-way through one).
- ``{"mode": "delta", "delta_link": "...", "select": "..."}``: follow the delta link.
- ``{"mode": "modifiedon", "since": "<iso>", "seen": {"<id>": ["<etag>", "<iso>"]}}``:
  rows with ``modifiedon >= since - lookback``; ``seen`` holds the rows already delivered
  in that window so that only changed ones come again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import structlog

from connectors.base import Page, Record, SkippedRecord
from connectors.dynamics.metadata import CHOICE_TYPES, TableMeta
from connectors.dynamics.wire import DELETED_SUFFIX, FORMATTED, format_filter, prefer

if TYPE_CHECKING:
    from connectors.dynamics.connector import DynamicsConnector

log = structlog.get_logger(__name__)

_PLAIN, _CHOICE, _LOOKUP_NAME = 0, 1, 2
_MAX_SEEN = 10_000
# The slot setters of the frozen Record: a frozen dataclass's __init__ calls
# object.__setattr__ once per field, which costs more than the rest of decoding a row.
_RECORD_SLOTS = tuple(getattr(Record, name).__set__
                      for name in ("id", "modified_at", "fields", "deleted", "etag"))


@lru_cache(maxsize=16384)
def parse_stamp(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ReadPlan:
    select: str
    columns: tuple[tuple[str, str, int, Any], ...]  # (field name, property, kind, options)
    annotations: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _, _ in self.columns)

    @property
    def props(self) -> tuple[str, ...]:
        return tuple(prop for _, prop, _, _ in self.columns)

    @property
    def choices(self) -> tuple[tuple[str, dict[int, str]], ...]:
        return tuple((name, options) for name, _, kind, options in self.columns
                     if kind == _CHOICE)

    @classmethod
    def build(cls, meta: TableMeta, fields: Sequence[str]) -> ReadPlan:
        props: list[str] = []
        columns: list[tuple[str, str, int, Any]] = []
        for name in dict.fromkeys(fields):
            column = meta.columns.get(name)
            if column is not None:
                kind = _CHOICE if column.kind in CHOICE_TYPES else _PLAIN
                columns.append((name, column.prop, kind, dict(column.options)))
            else:  # require_fields guarantees it is a lookup's display name
                column = meta.lookup_names[name]
                columns.append((name, f"{column.prop}@{FORMATTED}", _LOOKUP_NAME, None))
            props.append(column.prop)
        props += [meta.pk, "modifiedon"]
        return cls(select=",".join(dict.fromkeys(props)), columns=tuple(columns),
                   annotations=any(kind == _LOOKUP_NAME for _, _, kind, _ in columns))


class Reader:
    def __init__(self, connector: DynamicsConnector) -> None:
        self.c = connector
        self._relearned = False  # option labels read again during this read

    def read(self, meta: TableMeta, plan: ReadPlan, cursor: dict[str, Any] | None
             ) -> Iterator[Page]:
        self._relearned = False
        mode = (cursor or {}).get("mode")
        tracking = meta.change_tracking and self.c.use_change_tracking
        if mode == "delta" and tracking and cursor and cursor.get("select") == plan.select:
            yield from self._delta(meta, plan, cursor)
        elif mode == "modifiedon" and cursor and not tracking:
            yield from self._modified(meta, plan, cursor)
        else:
            if mode not in (None, "full"):
                log.info("dynamics_full_resync", entity=meta.entity.value, reason=(
                    "selected columns changed" if mode == "delta" and tracking
                    else "change tracking state changed"))
            yield from (self._initial(meta, plan) if tracking
                        else self._modified(meta, plan, None))

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, meta: TableMeta, plan: ReadPlan, rows: list[dict[str, Any]]
               ) -> tuple[list[Record], list[SkippedRecord]]:
        """Rows of one page as records. This loop runs once per row of every pull, so it
        works on the decoded row in place and builds records without ``Record.__init__``."""
        records: list[Record] = []
        skipped: list[SkippedRecord] = []
        keep = records.append
        stamp_of, from_iso, new = parse_stamp, datetime.fromisoformat, object.__new__
        set_id, set_modified, set_fields, set_deleted, set_etag = _RECORD_SLOTS
        pk = meta.pk
        names, props = plan.names, plan.props
        identity = names == props and not any(k.startswith("@") for k in names)
        width = plan.select.count(",") + 1  # selected columns, the key and modifiedon among them
        choices = plan.choices
        for row in rows:
            record_id = row.get(pk)
            if record_id.__class__ is str:
                stamp = row.get("modifiedon")
                # the service's UTC form parses straight to an aware datetime; a shared
                # cache misses on almost every row once a pull has more distinct stamps
                # than it holds, so it only serves the odd forms
                if stamp.__class__ is str and stamp[-1:] == "Z":
                    try:
                        modified = from_iso(stamp)
                    except ValueError:
                        modified = None
                else:
                    try:
                        modified = stamp_of(stamp)
                    except TypeError:  # a value that is not even hashable
                        modified = None
            else:
                modified = None
            if modified is None:
                self._odd_row(row, record_id, pk, records, skipped)
                continue
            etag = row.pop("@odata.etag", None)
            if identity:  # the row itself is the field map (plus its id and modifiedon)
                fields = row
                if len(row) < width:  # a selected column the service left out: null
                    for prop in props:
                        row.setdefault(prop, None)
            else:
                fields = {name: row.get(prop) for name, prop in zip(names, props, strict=True)}
            if choices:
                unknown = None
                for name, options in choices:
                    value = fields[name]
                    if value is not None:
                        label = options.get(value)
                        if label is None and self._relearn_options(meta, plan):
                            label = options.get(value)
                        if label is None:
                            unknown = f"{name}: option value {value!r} is not in the table metadata"
                            break
                        fields[name] = label
                if unknown is not None:
                    skipped.append(SkippedRecord(record_id, unknown, row))
                    continue
            record = new(Record)
            set_id(record, record_id)
            set_modified(record, modified)
            set_fields(record, fields)
            set_deleted(record, False)
            set_etag(record, etag)
            keep(record)
        return records, skipped

    def _relearn_options(self, meta: TableMeta, plan: ReadPlan) -> bool:
        """A choice value the cached metadata lacks: an administrator may have added the
        option since. Read the table's metadata again, once per read, and learn its labels
        in place; a value still unknown after that is skipped with its reason."""
        if self._relearned:
            return False
        self._relearned = True
        fresh = self.c.table(meta.entity, fresh=True)
        for name, options in plan.choices:
            column = fresh.columns.get(name)
            if column is not None:
                options.update(column.options)
        return True

    @staticmethod
    def _odd_row(row: dict[str, Any], record_id: Any, pk: str, records: list[Record],
                 skipped: list[SkippedRecord]) -> None:
        """A change-tracking tombstone, or a row that cannot be decoded (kept with why)."""
        if record_id is None and (row.get("reason") == "deleted" or str(
                row.get("@odata.context", "")).endswith(DELETED_SUFFIX)):
            records.append(Record(str(row.get("id")), datetime.now(UTC), {}, True))
            return
        reason = (f"row without {pk}" if record_id.__class__ is not str
                  else f"modifiedon {row.get('modifiedon')!r} is not a date/time")
        skipped.append(SkippedRecord(record_id if isinstance(record_id, str) else None, reason,
                                     row))

    def _headers(self, plan: ReadPlan, *, track: bool = False) -> dict[str, str]:
        return {"Prefer": prefer(self.c.page_size, track_changes=track,
                                 annotations=plan.annotations)}

    # -- change tracking ----------------------------------------------------------------------
    def _initial(self, meta: TableMeta, plan: ReadPlan) -> Iterator[Page]:
        url: str | None = f"{self.c.api_url}{meta.set_name}?$select={plan.select}"
        headers = self._headers(plan, track=True)
        while url:
            body = self.c.get_json(url, what="read_initial", headers=headers)
            records, skipped = self.decode(meta, plan, body.get("value", []))
            url = body.get("@odata.nextLink")
            if url:
                yield Page(records, {"mode": "full"}, skipped, full_refresh=True)
                continue
            delta = body.get("@odata.deltaLink")
            # no delta link (change tracking switched off meanwhile): full read next time
            cursor: dict[str, Any] = (
                {"mode": "delta", "delta_link": delta, "select": plan.select} if delta
                else {"mode": "full"})
            yield Page(records, cursor, skipped, full_refresh=True, complete=True)

    def _delta(self, meta: TableMeta, plan: ReadPlan, cursor: dict[str, Any]) -> Iterator[Page]:
        from connectors.dynamics.connector import DeltaExpiredError

        url: str | None = str(cursor["delta_link"])
        headers = self._headers(plan)
        first = True
        while url:
            try:
                body = self.c.get_json(url, what="read_delta", headers=headers)
            except DeltaExpiredError as exc:
                if not first:
                    raise
                log.warning("dynamics_delta_expired", entity=meta.entity.value, error=str(exc))
                yield from self._initial(meta, plan)
                return
            first = False
            records, skipped = self.decode(meta, plan, body.get("value", []))
            url = body.get("@odata.nextLink")
            if url:
                yield Page(records, cursor, skipped)
                continue
            delta = body.get("@odata.deltaLink") or cursor["delta_link"]
            yield Page(records, {"mode": "delta", "delta_link": delta, "select": plan.select},
                       skipped, complete=True)

    # -- modifiedon windows -------------------------------------------------------------------
    def _modified(self, meta: TableMeta, plan: ReadPlan, cursor: dict[str, Any] | None
                  ) -> Iterator[Page]:
        full = cursor is None
        since = parse_stamp(cursor["since"]) if cursor and cursor.get("since") else None
        seen: dict[str, list[str]] = dict((cursor or {}).get("seen") or {})
        query = f"{self.c.api_url}{meta.set_name}?$select={plan.select}"
        if since is not None:
            query += "&$filter=" + format_filter("modifiedon ge {start}",
                                                 start=since - self.c.lookback)
        url: str | None = f"{query}&$orderby=modifiedon asc,{meta.pk} asc"
        headers = self._headers(plan)
        while url:
            body = self.c.get_json(url, what="read_modified", headers=headers)
            records, skipped = self.decode(meta, plan, body.get("value", []))
            fresh: list[Record] = []
            for record in records:
                known = seen.get(record.id)
                if known is not None and known[0] == record.etag:
                    continue  # already delivered inside the lookback window
                fresh.append(record)
                since = record.modified_at if since is None else max(since, record.modified_at)
                seen[record.id] = [record.etag or "", iso(record.modified_at)]
            if since is not None:
                seen = _prune(seen, since, self.c.lookback.total_seconds())
            url = body.get("@odata.nextLink")
            next_cursor = {"mode": "modifiedon", "since": iso(since) if since else None,
                           "seen": seen}
            yield Page(fresh, next_cursor, skipped, full_refresh=full, complete=not url)


def _prune(seen: dict[str, list[str]], since: datetime, lookback_s: float
           ) -> dict[str, list[str]]:
    floor = iso(datetime.fromtimestamp(since.timestamp() - lookback_s, UTC))
    kept = {k: v for k, v in seen.items() if v[1] >= floor}
    if len(kept) > _MAX_SEEN:  # keep the cursor small: only exact ties with `since` matter
        top = iso(since)
        kept = {k: v for k, v in kept.items() if v[1] >= top}
    return kept
