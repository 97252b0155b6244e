"""HubSpot v3 object endpoints: list, read, batch read/update and CRM search."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.fragments import encode, page_body
from sandbox.hubspot.account import now_ms
from sandbox.hubspot.base import (
    ASSOC_TYPES,
    BATCH_MAX,
    LIST_MAX,
    SEARCH_FILTERS_MAX,
    SEARCH_GROUP_FILTERS_MAX,
    SEARCH_GROUPS_MAX,
    SEARCH_MAX,
    HubSpotBase,
    multi_values,
    standard_error,
)
from sandbox.hubspot.schema import (
    DEFAULT_RETURNED,
    OBJECT_ALIASES,
    SINGULAR,
    PropertyValueError,
    iso_ms,
)
from sandbox.hubspot.store import HsRecord, ObjectStore, SearchError

_ID = attrgetter("id")
_REV = attrgetter("rev")


class ObjectEndpoints(HubSpotBase):
    """List, read, write and search companies and deals."""

    # -- v3 objects -----------------------------------------------------------------------
    def list_objects(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store = self._store(obj)
        if store is None:
            return self._invalid(request, f"Unable to infer object type from: {obj}")
        args = request.args
        try:
            limit = int(args.get("limit", 10))
            after = int(args.get("after", 0) or 0)
        except ValueError:
            return self._invalid(request, "limit and after must be integers")
        if not 1 <= limit <= LIST_MAX:
            return self._invalid(request, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        archived = args.get("archived", "false").lower() == "true"
        names = multi_values(args.getlist("properties")) or list(DEFAULT_RETURNED[store.name])
        assoc = [OBJECT_ALIASES.get(a, a) for a in multi_values(args.getlist("associations"))]
        with self.lock:
            ids, nxt = store.page_ids(archived=archived, after=after, limit=limit)
            records = [store.records[i] for i in ids]
            if assoc:  # associations change without the record: never cached
                results = [encode(self._object_json(store, r, names, assoc)) for r in records]
            else:
                results = self._fragments(store, records, names)
        tail: dict[str, Any] = {}
        if nxt is not None:
            query = request.args.copy()
            query["after"] = str(nxt)
            link = f"{request.host_url.rstrip('/')}{request.path}?" + "&".join(
                f"{k}={v}" for k, v in query.items(multi=True))
            tail["paging"] = {"next": {"after": str(nxt), "link": link}}
        return self._reply_bytes(request, page_body({}, "results", results, tail))

    def _fragments(self, store: ObjectStore, records: list[HsRecord], names: list[str]
                   ) -> list[bytes]:
        """Each record's JSON for these properties, encoded once per change of the record."""
        return self.fragments.fragments(
            (store.name, tuple(names), store.schema), records, _ID,
            lambda rec: store.to_json(rec, names), _REV)

    def _object_json(self, store: ObjectStore, rec: HsRecord, names: list[str],
                     assoc: list[str]) -> dict[str, Any]:
        out = store.to_json(rec, names)
        if assoc:
            linked: dict[str, Any] = {}
            for to in assoc:
                pair = ASSOC_TYPES.get((store.name, to))
                if pair is None:
                    continue
                ids = self._associated(store.name, rec.id)
                label = f"{SINGULAR[store.name].lower()}_to_{SINGULAR[to].lower()}"
                items = []
                for i, other in enumerate(ids):
                    if i == 0 and store.name == "deals":
                        items.append({"id": str(other), "type": label})
                    items.append({"id": str(other), "type": f"{label}_unlabeled"})
                if items:
                    linked[to] = {"results": items}
            if linked:
                out["associations"] = linked
        return out

    def _associated(self, obj: str, record_id: int) -> list[int]:
        if obj == "deals":
            return list(self.account.deal_companies.get(record_id, []))
        return sorted(self.account.company_deals.get(record_id, set()))

    def get_object(self, request: Request, obj: str, record_id: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store = self._store(obj)
        if store is None:
            return self._invalid(request, f"Unable to infer object type from: {obj}")
        archived = request.args.get("archived", "false").lower() == "true"
        names = multi_values(request.args.getlist("properties")) or list(
            DEFAULT_RETURNED[store.name]
        )
        assoc = [
            OBJECT_ALIASES.get(a, a) for a in multi_values(request.args.getlist("associations"))
        ]
        with self.lock:
            rec = store.records.get(int(record_id)) if record_id.isdigit() else None
            if rec is None or (rec.archived_ms is not None) != archived:
                return self._fail(request, 404, "OBJECT_NOT_FOUND",
                                  "resource not found", context={"id": [record_id]})
            return self._reply(request, self._object_json(store, rec, names, assoc))

    def patch_object(self, request: Request, obj: str, record_id: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store, body = self._store(obj), self._body(request)
        if store is None or body is None or not isinstance(body.get("properties"), dict):
            return self._invalid(request, "Invalid input JSON: expected properties")
        results, errors = self._update(store, [{"id": record_id, "properties": body["properties"]}])
        if errors:
            err = errors[0]
            status = 404 if err["category"] == "OBJECT_NOT_FOUND" else 400
            return self._fail(request, status, err["category"], err["message"])
        return self._reply(request, results[0])

    def batch_read(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store, body = self._store(obj), self._body(request)
        if store is None or body is None or not isinstance(body.get("inputs"), list):
            return self._invalid(request, "Invalid input JSON: expected inputs")
        inputs = body["inputs"]
        if len(inputs) > BATCH_MAX:
            return self._invalid(request, f"Batch input must contain at most {BATCH_MAX} inputs")
        archived = request.args.get("archived", "false").lower() == "true"
        names = list(body.get("properties") or DEFAULT_RETURNED[store.name])
        started = iso_ms(now_ms())
        results, missing = [], []
        with self.lock:
            for item in inputs:
                rid = str(item.get("id", "")) if isinstance(item, dict) else ""
                rec = store.records.get(int(rid)) if rid.isdigit() else None
                if rec is None or (rec.archived_ms is not None) != archived:
                    missing.append(rid)
                else:
                    results.append(store.to_json(rec, names))
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": iso_ms(now_ms())}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [standard_error(
                "OBJECT_NOT_FOUND",
                f"Could not get some {SINGULAR[store.name]} objects, they may be deleted or "
                "not exist. Check that ids are valid.",
                {"ids": missing},
            )]
        return self._reply(request, out, 207 if missing else 200)

    def batch_update(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store, body = self._store(obj), self._body(request)
        if store is None or body is None or not isinstance(body.get("inputs"), list):
            return self._invalid(request, "Invalid input JSON: expected inputs")
        inputs = body["inputs"]
        if not inputs or len(inputs) > BATCH_MAX:
            return self._invalid(
                request, f"Batch input must contain between 1 and {BATCH_MAX} inputs"
            )
        ids = [str(i.get("id")) if isinstance(i, dict) else "" for i in inputs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            return self._invalid(
                request, f"Duplicate IDs found in batch input: {dupes}. IDs must be unique"
            )
        started = iso_ms(now_ms())
        results, errors = self._update(store, inputs)
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": iso_ms(now_ms())}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
        return self._reply(request, out, 207 if errors else 200)

    def _update(self, store: ObjectStore, inputs: list[Any]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        results, errors = [], []
        with self.lock:
            for item in inputs:
                item = item if isinstance(item, dict) else {}
                rid = str(item.get("id", ""))
                props = item.get("properties")
                context = {"ids": [rid]}
                if item.get("objectWriteTraceId") is not None:
                    context["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
                rec = store.live(rid)
                if rec is None:
                    errors.append(standard_error(
                        "OBJECT_NOT_FOUND",
                        f"Could not find {SINGULAR[store.name]} with id {rid}", context))
                    continue
                if not isinstance(props, dict):
                    errors.append(standard_error("VALIDATION_ERROR", "properties missing", context))
                    continue
                rule = self.faults.rejection_for(store.name, rid, props)
                if rule is not None:
                    errors.append(standard_error("VALIDATION_ERROR", rule.message, context,
                                                 "crm.objects.VALIDATION_RULE"))
                    continue
                try:
                    self.account.apply_properties(store, rec, props, system=False)
                except PropertyValueError as exc:
                    errors.append(standard_error(
                        "VALIDATION_ERROR", f"Property values were not valid: {exc}",
                        {**context, "propertyName": [str(n) for n in props]}, exc.code))
                    continue
                store.touch(rec, max(now_ms(), rec.updated_ms + 1))
                results.append(store.to_json(rec, list(props)))
        return results, errors

    # -- search ---------------------------------------------------------------------------
    def search(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request, search=True)) is not None:
            return early
        store, body = self._store(obj), self._body(request)
        if store is None or body is None:
            return self._invalid(request, "Invalid input JSON on line 1")
        problem = _search_problem(body)
        if problem:
            return self._invalid(request, problem)
        limit = int(body.get("limit") or 10)
        offset = int(body.get("after") or 0)
        cap = self.search_result_cap
        if offset >= cap:
            return self._fail(
                request, 400, "VALIDATION_ERROR",
                f"Paging past {cap} search results is not allowed. Refine the search.",
            )
        sorts = [s if isinstance(s, dict) else {"propertyName": s} for s in body.get("sorts") or []]
        names = list(body.get("properties") or DEFAULT_RETURNED[store.name])
        with self.lock:
            try:
                ids, total = store.search(body.get("filterGroups") or [], sorts, offset,
                                          min(limit, cap - offset))
            except SearchError as exc:
                return self._invalid(request, str(exc))
            results = self._fragments(store, [store.records[i] for i in ids], names)
        tail: dict[str, Any] = {}
        if offset + len(ids) < total:
            tail["paging"] = {"next": {"after": str(offset + len(ids))}}
        return self._reply_bytes(request, page_body({"total": total}, "results", results, tail))


def _search_problem(body: dict[str, Any]) -> str | None:
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "filterGroups must be a list of objects"
    if len(groups) > SEARCH_GROUPS_MAX:
        return f"Too many filter groups ({len(groups)}); the maximum is {SEARCH_GROUPS_MAX}"
    counts = [len(g.get("filters") or []) for g in groups]
    if any(c > SEARCH_GROUP_FILTERS_MAX for c in counts):
        return f"A filter group may contain at most {SEARCH_GROUP_FILTERS_MAX} filters"
    if sum(counts) > SEARCH_FILTERS_MAX:
        return f"Too many filters ({sum(counts)}); the maximum is {SEARCH_FILTERS_MAX}"
    if body.get("query"):
        return "Full-text 'query' is not supported by this sandbox"
    try:
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
    except (TypeError, ValueError):
        return "limit and after must be integers"
    if not 1 <= limit <= SEARCH_MAX or after < 0:
        return f"limit must be between 1 and {SEARCH_MAX}, got {limit}"
    return None
