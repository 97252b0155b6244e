"""Pull: read pages from a connector, map them to canonical rows and store each page
together with the cursor that covers it, in one transaction.

A crash between pages re-reads the page after the last committed cursor; nothing is
skipped. Records the mapping cannot convert are stored as skipped records with the
reason, never dropped silently.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from connectors.base import Connector, Entity, Page
from sync.checkpoints import checkpoint

log = structlog.get_logger(__name__)


class EntityMapping(Protocol):
    """What pulling needs from a compiled mapping for one entity."""

    def read_fields(self) -> Sequence[str]: ...

    def to_canonical(self, fields: Mapping[str, Any]) -> dict[str, Any]: ...


class PageStore(Protocol):
    def apply_page(
        self,
        *,
        connection: str,
        entity: str,
        rows: Sequence[Mapping[str, Any]],
        deleted_ids: Sequence[str],
        skipped: Sequence[tuple[str | None, str, Any]],
        cursor: Mapping[str, Any],
        run_id: int,
        full_refresh: bool,
    ) -> Any: ...

    def tombstone_unseen(self, *, connection: str, entity: str, run_id: int) -> int: ...


@dataclass(slots=True)
class EntityCounts:
    pages: int = 0
    records: int = 0
    changed: int = 0
    deleted: int = 0
    skipped: int = 0
    complete: bool = False
    skip_reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "records": self.records,
            "changed": self.changed,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "complete": self.complete,
        }


def normalize_page(
    page: Page, mapping: EntityMapping
) -> tuple[list[dict[str, Any]], list[str], list[tuple[str | None, str, Any]]]:
    """Split a page into canonical rows, deleted ids and skipped records (with reasons)."""
    rows: list[dict[str, Any]] = []
    deleted: list[str] = []
    skipped: list[tuple[str | None, str, Any]] = [(s.id, s.reason, s.payload) for s in page.skipped]
    to_canonical = mapping.to_canonical
    for record in page.records:
        if record.deleted:
            deleted.append(record.id)
            continue
        try:
            row = to_canonical(record.fields)
        except (ValueError, TypeError, KeyError) as exc:
            skipped.append((record.id, str(exc), dict(record.fields)))
            continue
        row["external_id"] = record.id
        row["vendor_modified_at"] = record.modified_at
        row["etag"] = record.etag
        row["raw"] = dict(record.fields)
        rows.append(row)
    return rows, deleted, skipped


def pull_entity(
    *,
    store: PageStore,
    connector: Connector,
    connection: str,
    entity: Entity,
    mapping: EntityMapping,
    extra_fields: Sequence[str],
    run_id: int,
    stop: threading.Event | None = None,
    cursor: Mapping[str, Any] | None,
) -> EntityCounts:
    """Pull one entity of one connection from ``cursor`` (its stored one: None starts from
    scratch); returns what happened."""
    counts = EntityCounts()
    wanted = list(dict.fromkeys([*mapping.read_fields(), *extra_fields]))
    for page in connector.read(entity, cursor, wanted):
        rows, deleted, skipped = normalize_page(page, mapping)
        checkpoint("pull.before_page")
        result = store.apply_page(
            connection=connection,
            entity=entity.value,
            rows=rows,
            deleted_ids=deleted,
            skipped=skipped,
            cursor=page.cursor,
            run_id=run_id,
            full_refresh=page.full_refresh,
        )
        checkpoint("pull.page_stored")
        counts.pages += 1
        counts.records += len(rows)
        counts.deleted += len(deleted)
        counts.skipped += len(skipped)
        counts.changed += _changed(result, len(rows))
        for _id, reason, _payload in skipped[:3]:
            counts.skip_reasons.append(f"{_id}: {reason}")
        if skipped:
            log.warning(
                "records_skipped",
                entity=entity.value,
                count=len(skipped),
                first=f"{skipped[0][0]}: {skipped[0][1]}",
            )
        log.debug("page_pulled", entity=entity.value, records=len(rows), deleted=len(deleted))
        if page.complete:
            counts.complete = True
            if page.full_refresh:
                checkpoint("pull.before_tombstones")
                counts.deleted += store.tombstone_unseen(
                    connection=connection, entity=entity.value, run_id=run_id
                )
        if stop is not None and stop.is_set():
            log.info("pull_stopped", entity=entity.value, pages=counts.pages)
            break
    return counts


def _changed(result: Any, default: int) -> int:
    inserted = getattr(result, "inserted", None)
    updated = getattr(result, "updated", None)
    if inserted is None or updated is None:
        return default
    return int(inserted) + int(updated)
