"""Runs SOQL once per query and serves the rows in batches behind a query locator."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sandbox.fragments import FragmentCache, page_body
from sandbox.salesforce.org import Org
from sandbox.salesforce.plan import Projection, Renderer, predicate, projection, sorter
from sandbox.salesforce.schema import make_id
from sandbox.salesforce.soql import SoqlError, located, parse

DEFAULT_BATCH = 2000
MIN_BATCH = 200
MAX_BATCH = 2000
MAX_OPEN_LOCATORS = 50
_ID = itemgetter("Id")  # Salesforce caps open cursors per user; the oldest are dropped


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
        self.fragments = FragmentCache()

    def run(self, soql: str, *, include_deleted: bool, version: str,
            batch: int) -> dict[str, Any]:
        locator = self._select(soql, include_deleted=include_deleted, batch=batch)
        return self._page(locator, 0, version, batch)

    def _select(self, soql: str, *, include_deleted: bool, batch: int) -> Locator:
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
        return Locator(make_id("01g", next(self._numbers)), rows, view, endpoint, batch)

    def more(self, locator_ref: str, *, version: str, batch: int | None) -> dict[str, Any]:
        locator, start = self._locator(locator_ref)
        return self._page(locator, start, version, batch or locator.batch)

    def run_body(self, soql: str, *, include_deleted: bool, version: str, batch: int) -> bytes:
        """:meth:`run` as the JSON body, joined from cached per-record JSON."""
        locator = self._select(soql, include_deleted=include_deleted, batch=batch)
        return self._body(locator, 0, version, batch)

    def more_body(self, locator_ref: str, *, version: str, batch: int | None) -> bytes:
        locator, start = self._locator(locator_ref)
        return self._body(locator, start, version, batch or locator.batch)

    def _locator(self, locator_ref: str) -> tuple[Locator, int]:
        ident, _, start = locator_ref.rpartition("-")
        with self._lock:
            locator = self._locators.get(ident)
        if locator is None or not start.isdigit():
            raise SoqlError("INVALID_QUERY_LOCATOR", "invalid query locator")
        return locator, int(start)

    def _head(self, locator: Locator, start: int, version: str, batch: int
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The page's fields before ``records``, and its rows; keeps the locator open
        while rows remain."""
        end = min(start + batch, len(locator.rows))
        done = end >= len(locator.rows)
        head: dict[str, Any] = {"totalSize": len(locator.rows), "done": done}
        if done:
            with self._lock:
                self._locators.pop(locator.ident, None)
        else:
            head["nextRecordsUrl"] = (
                f"/services/data/v{version}/{locator.endpoint}/{locator.ident}-{end}")
            with self._lock:
                self._locators[locator.ident] = locator
                self._locators.move_to_end(locator.ident)
                while len(self._locators) > MAX_OPEN_LOCATORS:
                    self._locators.popitem(last=False)
        return head, locator.rows[start:end]

    def _renderer(self, locator: Locator, version: str) -> Renderer:
        return locator.projection.compile(self.org.tables, f"/services/data/v{version}/sobjects/")

    def _page(self, locator: Locator, start: int, version: str, batch: int) -> dict[str, Any]:
        head, rows = self._head(locator, start, version, batch)
        render = self._renderer(locator, version)
        memo: dict[tuple[str, str], Any] = {}
        head["records"] = [render(row, memo) for row in rows]
        return head

    def _body(self, locator: Locator, start: int, version: str, batch: int) -> bytes:
        head, rows = self._head(locator, start, version, batch)
        render = self._renderer(locator, version)
        memo: dict[tuple[str, str], Any] = {}
        projection = locator.projection
        # Rows are replaced on every write, so a row object is its own version stamp; a
        # projection reaching into parents also depends on them: any write re-renders it.
        key = (version, projection.signature(),
               self.org.version if projection.parents else 0)
        fragments = self.fragments.fragments(key, rows, _ID, lambda row: render(row, memo))
        return page_body(head, "records", fragments)
