"""Runs SOQL once per query and serves the rows in batches behind a query locator."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sandbox.salesforce.org import Org
from sandbox.salesforce.plan import Projection, predicate, projection, sorter
from sandbox.salesforce.schema import make_id
from sandbox.salesforce.soql import SoqlError, located, parse

DEFAULT_BATCH = 2000
MIN_BATCH = 200
MAX_BATCH = 2000
MAX_OPEN_LOCATORS = 50  # Salesforce caps open cursors per user; the oldest are dropped


@dataclass(slots=True)
class Locator:
    ident: str
    rows: list[dict[str, Any]]
    projection: Projection
    endpoint: str  # query | queryAll
    batch: int


def batch_size(header: str | None, default: int = DEFAULT_BATCH) -> int:
    """``Sforce-Query-Options: batchSize=N``: 200..2000; Salesforce treats it as a hint."""
    if not header:
        return default
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize":
            try:
                size = int(value.strip())
            except ValueError:
                return default
            return max(MIN_BATCH, min(MAX_BATCH, size))
    return default


class QueryEngine:
    def __init__(self, org: Org) -> None:
        self.org = org
        self._locators: OrderedDict[str, Locator] = OrderedDict()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def run(self, soql: str, *, include_deleted: bool, version: str,
            batch: int) -> dict[str, Any]:
        query = parse(soql)
        org = self.org
        with org.lock:
            obj = next((o for o in org.objects.values()
                        if o.name.lower() == query.object_name.lower()), None)
            if obj is None:
                raise SoqlError("INVALID_TYPE", located(
                    query.text, query.object_pos,
                    f"sObject type '{query.object_name}' is not supported. If you are attempting "
                    "to use a custom object, be sure to append the '__c' after the entity name. "
                    "Please reference your WSDL or the describe call for the appropriate names."))
            view = projection(query, org.objects, obj)
            keep = (predicate(query, org.objects, obj, org.tables, query.where)
                    if query.where is not None else None)
            sort = sorter(query, org.objects, obj, org.tables)
            if include_deleted:
                org.purge_expired()
            table = org.tables[obj.name]
            if include_deleted:
                rows = [r for r in table.values() if keep is None or keep(r)]
            else:
                rows = [r for r in table.values()
                        if not r["IsDeleted"] and (keep is None or keep(r))]
        if query.order_by:
            sort(rows)
        if query.offset:
            rows = rows[query.offset:]
        if query.limit is not None:
            rows = rows[: query.limit]
        endpoint = "queryAll" if include_deleted else "query"
        locator = Locator(make_id("01g", next(self._numbers)), rows, view, endpoint, batch)
        return self._page(locator, 0, version, batch)

    def more(self, locator_ref: str, *, version: str, batch: int | None) -> dict[str, Any]:
        ident, _, start = locator_ref.rpartition("-")
        with self._lock:
            locator = self._locators.get(ident)
        if locator is None or not start.isdigit():
            raise SoqlError("INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(locator, int(start), version, batch or locator.batch)

    def _page(self, locator: Locator, start: int, version: str, batch: int) -> dict[str, Any]:
        end = min(start + batch, len(locator.rows))
        render = locator.projection.compile(self.org.tables, f"/services/data/v{version}/sobjects/")
        memo: dict[tuple[str, str], Any] = {}
        records = [render(row, memo) for row in locator.rows[start:end]]
        done = end >= len(locator.rows)
        page: dict[str, Any] = {"totalSize": len(locator.rows), "done": done}
        if done:
            with self._lock:
                self._locators.pop(locator.ident, None)
        else:
            page["nextRecordsUrl"] = (
                f"/services/data/v{version}/{locator.endpoint}/{locator.ident}-{end}")
            with self._lock:
                self._locators[locator.ident] = locator
                self._locators.move_to_end(locator.ident)
                while len(self._locators) > MAX_OPEN_LOCATORS:
                    self._locators.popitem(last=False)
        page["records"] = records
        return page
