"""Reads of the Dataverse sandbox: collections with paging cookies, change tracking
(delta links, ``$deletedEntity`` rows), single rows, and the JSON shape of a row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from werkzeug.wrappers import Request, Response

from sandbox.dynamics.annotated import annotated_objects, column_annotator, piece_annotator
from sandbox.dynamics.odata import (
    ODataError,
    annotation_wanted,
    compile_filter,
    decode_deltatoken,
    decode_skiptoken,
    encode_deltatoken,
    encode_skiptoken,
    parse_orderby,
    parse_prefer,
)
from sandbox.dynamics.schema import CHOICE_TYPES, LOOKUP_TYPES, Attribute
from sandbox.dynamics.store import Row, Store, Table
from sandbox.fragments import FragmentCache, page_body

API = "/api/data/v9.2"
_VERSION = itemgetter("versionnumber")
MAX_PAGE_SIZE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_NAME = "Microsoft.Dynamics.CRM.associatednavigationproperty"
EXPIRED_VERSION_STAMP = "0x80044352"
PRESET_ANNOTATIONS = (FORMATTED,)  # what the connector asks (others: kept once asked)


class ReadEndpoints:
    """Mixed into the app; relies on its store, clock and reply helpers."""

    store: Store
    fragments: FragmentCache
    lock: threading.RLock
    clock: Any
    delta_token_retention: timedelta
    delta_tokens_expired_before: datetime | None

    if TYPE_CHECKING:  # provided by the app class; declared for type checking only

        def _base(self, request: Request) -> str:
            raise NotImplementedError

        def _reply(self, data: Any, status: int = 200, headers: dict[str, str] | None = None
                   ) -> Response:
            raise NotImplementedError

        def _table(self, name: str) -> Table:
            raise NotImplementedError

        def parse_key(self, table: Table, key: str) -> str:
            raise NotImplementedError

        def missing(self, table: Table, record_id: str) -> ODataError:
            raise NotImplementedError

    def _select(self, request: Request, table: Table) -> list[str]:
        props = table.definition.by_prop()
        text = request.args.get("$select")
        if not text:
            return list(props)
        chosen = [s.strip() for s in text.split(",") if s.strip()]
        for name in chosen:
            if name not in props:
                raise ODataError(f"Could not find a property named '{name}' on type "
                                 f"'Microsoft.Dynamics.CRM.{table.definition.logical}'.")
        pk = table.definition.pk
        return chosen if pk in chosen else [*chosen, pk]

    def render(self, table: Table, row: Row, select: list[str], annotations: str | None
               ) -> dict[str, Any]:
        return self.row_renderer(table, select, annotations)(row)

    def row_renderer(self, table: Table, select: list[str], annotations: str | None
                     ) -> Callable[[Row], dict[str, Any]]:
        """Row -> its JSON-ready dict: the etag, then each selected column (absent: null)
        preceded by the annotations asked for. What annotations apply to which column is
        worked out once here, not for every row; lookup labels are looked up once per value
        (the caller holds the lock: no row changes meanwhile)."""
        if not annotations:
            def plain(row: Row) -> dict[str, Any]:
                out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
                get = row.get
                for prop in select:
                    out[prop] = get(prop)
                return out

            return plain
        navigation = annotation_wanted(annotations, NAV_NAME)
        lookup_name = annotation_wanted(annotations, LOOKUP_NAME)
        columns = [(prop, attr, label_it, lookup, formatted_key, navigation_key, lookup_key)
                   for prop, attr, label_it, lookup, _, _, formatted_key, navigation_key,
                   lookup_key in self._annotated_columns(table, select, annotations)]
        labels: dict[tuple[str, Any], str | None] = {}
        targets: dict[tuple[str, Any], str] = {}
        unknown = object()

        def annotated(row: Row) -> dict[str, Any]:
            out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
            get = row.get
            for prop, attr, label_it, lookup, formatted_key, navigation_key, lookup_key \
                    in columns:
                value = get(prop)
                if label_it and value is not None:
                    memo = (prop, value) if type(value) in (str, int, bool) else None
                    label = labels.get(memo, unknown) if memo is not None else unknown
                    if label is unknown:
                        label = self._formatted(attr.type, attr.options, attr.targets, value)
                        if memo is not None:
                            labels[memo] = label
                    if label is not None:
                        out[formatted_key] = label
                if lookup and value is not None:
                    if navigation:
                        out[navigation_key] = attr.schema if attr.custom else attr.logical
                    if lookup_name:
                        target = targets.get((prop, value)) if type(value) is str else None
                        if target is None:
                            target = self._lookup_target(attr.targets, value)
                            if type(value) is str:
                                targets[(prop, value)] = target
                        out[lookup_key] = target
                out[prop] = value
            return out

        return annotated

    @staticmethod
    def _annotated_columns(table: Table, select: list[str], annotations: str
                           ) -> list[tuple[str, Attribute, bool, bool, bool, bool, str, str,
                                           str]]:
        """Per selected column: (prop, attribute, labelled?, lookup?, navigation wanted?,
        lookup name wanted?, and the three annotation keys), worked out once per page."""
        props = table.definition.by_prop()
        formatted = annotation_wanted(annotations, FORMATTED)
        navigation = annotation_wanted(annotations, NAV_NAME)
        lookup_name = annotation_wanted(annotations, LOOKUP_NAME)
        labelled = (*CHOICE_TYPES, "Boolean", *LOOKUP_TYPES)  # the types _formatted labels
        return [(prop, props[prop], formatted and props[prop].type in labelled,
                 props[prop].type in LOOKUP_TYPES, navigation, lookup_name,
                 f"{prop}@{FORMATTED}", f"{prop}@{NAV_NAME}", f"{prop}@{LOOKUP_NAME}")
                for prop in select]

    def _formatted(self, kind: str, options: dict[int, str], targets: tuple[str, ...],
                   value: Any) -> str | None:
        if kind in CHOICE_TYPES:
            return options.get(value)
        if kind == "Boolean":
            return options.get(int(bool(value)), "Yes" if value else "No")
        if kind in LOOKUP_TYPES:
            for target in targets:
                table = self.store.tables.get(target)
                row = table.rows.get(value) if table else None
                if row is not None:
                    return row.get(table.definition.primary_name) if table else None
        return None

    def _lookup_target(self, targets: tuple[str, ...], value: str) -> str:
        for target in targets:
            table = self.store.tables.get(target)
            if table is not None and value in table.rows:
                return target
        return targets[0] if targets else ""

    def list_rows(self, request: Request, set_name: str) -> Response:
        table = self._table(set_name)
        select = self._select(request, table)
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        applied: list[str] = []
        size = MAX_PAGE_SIZE
        if "odata.maxpagesize" in prefer:
            try:
                size = max(1, min(MAX_PAGE_SIZE, int(prefer["odata.maxpagesize"])))
            except ValueError:
                size = MAX_PAGE_SIZE
            applied.append(f"odata.maxpagesize={size}")
        annotations = prefer.get("odata.include-annotations")
        if annotations:
            applied.append(f'odata.include-annotations="{annotations}"')
        tracking = "odata.track-changes" in prefer and table.definition.change_tracking
        if request.args.get("$deltatoken") is not None:
            return self._delta(request, table, select, size, annotations, applied)
        if tracking:
            for option in ("$filter", "$orderby", "$top", "$expand"):
                if option in request.args:
                    raise ODataError(f"The query option {option} is not supported with change "
                                     "tracking.", code="0x80044353")
            applied.append("odata.track-changes")
        return self._query_page(request, table, select, size, annotations, applied, tracking)

    def _query_page(self, request: Request, table: Table, select: list[str], size: int,
                    annotations: str | None, applied: list[str], tracking: bool) -> Response:
        definition = table.definition
        props = definition.by_prop()
        filter_text = request.args.get("$filter", "")
        predicate = compile_filter(filter_text, props, definition.logical) if filter_text else None
        order_text = request.args.get("$orderby", "")
        order = parse_orderby(order_text, props, definition.attributes[definition.pk],
                              definition.logical)
        top = request.args.get("$top")
        if top is not None:
            if not top.isdigit():
                raise ODataError(f"Invalid value '{top}' for $top.")
            size = min(int(top), MAX_PAGE_SIZE)
        result = self.store.query(table, filter_text, predicate, order, order_text)
        start, page_no, baseline = 0, 1, self.store.version
        token = request.args.get("$skiptoken")
        if token:
            cookie = decode_skiptoken(token, order)
            start = self.store.resume_after(table, result, order, order.key(cookie.last))
            page_no = cookie.page + 1
            baseline = cookie.baseline if cookie.baseline is not None else baseline
        ids = result.ids[start:start + size]
        head = {"@odata.context": self._context(request, table, select)}
        tail: dict[str, str] = {}
        more = start + size < len(result.ids) and top is None
        if more:
            cookie_text = encode_skiptoken(order, table.rows[ids[-1]], table.rows[ids[0]],
                                           page_no, tracking, baseline if tracking else None)
            tail["@odata.nextLink"] = self._link(request, {"$skiptoken": cookie_text})
        elif tracking:
            delta = encode_deltatoken(baseline, self.clock())
            tail["@odata.deltaLink"] = self._link(request, {"$deltatoken": delta},
                                                  keep=("$select",))
        # the same slice of the same query over unchanged data: the same rows
        slice_key = (filter_text, order_text, start, len(ids))
        body = self._page_body(table, head, ids, slice_key, select, annotations, tail)
        headers = {"Preference-Applied": ",".join(applied)} if applied else None
        return self._raw_reply(body, headers)

    def _page_body(self, table: Table, head: dict[str, Any], ids: list[str],
                   slice_key: tuple[Any, ...], select: list[str], annotations: str | None,
                   tail: dict[str, Any]) -> bytes:
        """A page joins each row's JSON, kept per version and projection. Without
        annotations that JSON is picked from the row's wire form (encoded when the row was
        written), so even a first read encodes nothing. Annotated pages are joined from it
        too, each annotated column's pieces prefixed with annotations worked out once per
        distinct value (``_annotated_fragments``); they depend on other rows (lookup
        names), so they are kept per data version."""
        store, definition, rows = self.store, table.definition, table.rows
        pk = definition.pk
        if not annotations:
            wires = table.wires
            store.sync_wires(table)
            if wires.projectable(select):  # rows already encoded: project and join
                plain = (definition.logical, tuple(select), "", store.pokes, "wire")
                project = wires.projector(select)

                def build() -> list[bytes]:
                    current = wires.current(rows, ids)
                    return self.fragments.keyed(plain, ids, current, current, project,
                                                same_object=True)

                return page_body(head, "value",
                                 self.fragments.page(plain, store.data_version, slice_key, build),
                                 tail)
        if annotations:
            wires = table.wires
            store.sync_wires(table)
            if wires.projectable(select):  # annotations joined to the rows' wire form
                return page_body(head, "value", self._annotated_fragments(
                    table, ids, slice_key, select, annotations), tail)
        projection = (table.definition.logical, tuple(select), annotations or "", store.pokes,
                      store.data_version if annotations else 0)
        fragments = self.fragments.page(
            projection, store.data_version, slice_key,
            lambda: self.fragments.fragments(
                projection, list(map(rows.__getitem__, ids)), itemgetter(pk), stamp=_VERSION,
                render_many=lambda batch: list(map(
                    self.row_renderer(table, select, annotations), batch))))
        return page_body(head, "value", fragments, tail)

    def lookup_presets(self, table: Table) -> list[tuple[tuple[Any, ...], str,
                                                           Callable[[bytes], bytes]]]:
        """The lookup annotations kept from every write on (``Store.lookup_presets``):
        those the connector asks for (formatted values)."""
        presets = []
        select = [a.prop for a in table.definition.attributes.values()
                  if a.type in LOOKUP_TYPES]
        prefixes = dict(zip(select, table.wires.prefixes(select), strict=True))
        for spec in PRESET_ANNOTATIONS:
            for (prop, attr, label_it, lookup, navigation, lookup_name, formatted_key,
                 navigation_key, lookup_key) in self._annotated_columns(table, select, spec):
                one = piece_annotator(
                    attr, prefixes[prop], label_it=label_it, lookup=lookup,
                    navigation=navigation, lookup_name=lookup_name,
                    formatted_key=formatted_key, navigation_key=navigation_key,
                    lookup_key=lookup_key, labeller=self._formatted,
                    locator=self._lookup_target)
                presets.append(((prop, label_it, navigation, lookup_name), prop, one))
        return presets

    def _annotated_fragments(self, table: Table, ids: list[str], slice_key: tuple[Any, ...],
                             select: list[str], annotations: str) -> list[bytes]:
        """The annotated JSON of each row of ``ids``, equal to the per-row rendering's:
        kept per data version, as labels of lookups depend on the rows they reference."""
        store, wires, rows = self.store, table.wires, table.rows
        projection = (table.definition.logical, tuple(select), annotations, store.pokes,
                      store.data_version, "wire")
        annotators = {}
        for (prop, attr, label_it, lookup, navigation, lookup_name, formatted_key,
             navigation_key, lookup_key), prefix in zip(
                self._annotated_columns(table, select, annotations), wires.prefixes(select),
                strict=True):
            if not (label_it or (lookup and (navigation or lookup_name))):
                continue
            one = piece_annotator(
                attr, prefix, label_it=label_it, lookup=lookup, navigation=navigation,
                lookup_name=lookup_name, formatted_key=formatted_key,
                navigation_key=navigation_key, lookup_key=lookup_key,
                labeller=self._formatted, locator=self._lookup_target)
            kept = wires.lookup_memo((prop, label_it, navigation, lookup_name), prop, one) \
                if lookup else None
            annotators[prop] = column_annotator(one, kept)

        def encode_many(wanted: list[str]) -> list[bytes]:
            return annotated_objects(wires, list(map(wires.by_id.__getitem__, wanted)),
                                     select, annotators)

        def build() -> list[bytes]:
            current = wires.current(rows, ids)  # every row of ids is encoded from here on
            return self.fragments.keyed(projection, ids, current, ids, encode_many,
                                        same_object=True)

        return self.fragments.page(projection, store.data_version, slice_key, build)

    def _raw_reply(self, body: bytes, headers: dict[str, str] | None = None) -> Response:
        out = Response(body, status=200, content_type="application/json; odata.metadata=minimal")
        out.headers["OData-Version"] = "4.0"
        for name, value in (headers or {}).items():
            out.headers[name] = value
        return out

    def _context(self, request: Request, table: Table, select: list[str], suffix: str = ""
                 ) -> str:
        chosen = request.args.get("$select")
        columns = f"({','.join(select)})" if chosen else ""
        return f"{self._base(request)}/$metadata#{table.definition.set_name}{columns}{suffix}"

    def _link(self, request: Request, extra: dict[str, str],
              keep: tuple[str, ...] | None = None) -> str:
        params = [(k, v) for k, v in request.args.items(multi=True)
                  if k not in ("$skiptoken", "$deltatoken") and (keep is None or k in keep)]
        params += list(extra.items())
        query = urlencode(params, quote_via=quote, safe="$,()'")
        return f"{self._base(request)}/{request.path.rsplit('/', 1)[-1]}?{query}"

    def _delta(self, request: Request, table: Table, select: list[str], size: int,
               annotations: str | None, applied: list[str]) -> Response:
        token = request.args.get("$deltatoken", "")
        try:
            since, issued = decode_deltatoken(token)
        except ValueError:
            since, issued = -1, self.clock()
        oldest_valid = self.clock() - self.delta_token_retention
        if (since < 0 or since > self.store.version or issued < oldest_valid
                or (self.delta_tokens_expired_before is not None
                    and issued <= self.delta_tokens_expired_before)):
            raise ODataError("Version stamp associated with the client has expired. Please "
                             "perform a full sync.", code=EXPIRED_VERSION_STAMP)
        upto, offset = self.store.version, 0
        if request.args.get("$skiptoken"):
            upto_text, _, offset_text = request.args["$skiptoken"].partition(":")
            upto, offset = int(upto_text), int(offset_text)
        changes = self.store.changes_since(table, since, upto)
        page = changes[offset:offset + size]
        deleted_context = f"{self._base(request)}/$metadata#{table.definition.set_name}" \
                          "/$deletedEntity"
        values: list[dict[str, Any]] = []
        render = self.row_renderer(table, select, annotations)
        for record_id, row in page:
            if row is None:
                values.append({"@odata.context": deleted_context, "id": record_id,
                               "reason": "deleted"})
            else:
                values.append(render(row))
        body: dict[str, Any] = {
            "@odata.context": self._context(request, table, select, "/$delta"), "value": values}
        if offset + size < len(changes):
            body["@odata.nextLink"] = self._link(
                request, {"$deltatoken": token, "$skiptoken": f"{upto}:{offset + size}"},
                keep=("$select",))
        else:
            body["@odata.deltaLink"] = self._link(
                request, {"$deltatoken": encode_deltatoken(upto, self.clock())},
                keep=("$select",))
        applied.append("odata.track-changes")
        return self._reply(body, headers={"Preference-Applied": ",".join(applied)})

    def retrieve(self, request: Request, set_name: str, key: str) -> Response:
        table = self._table(set_name)
        record_id = self.parse_key(table, key)
        row = table.rows.get(record_id)
        if row is None:
            raise self.missing(table, record_id)
        select = self._select(request, table)
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        body = {"@odata.context": self._context(request, table, select, "/$entity"),
                **self.render(table, row, select, prefer.get("odata.include-annotations"))}
        return self._reply(body, headers={"ETag": body["@odata.etag"]})

