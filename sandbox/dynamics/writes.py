"""Writes of the Dataverse sandbox: create, upserting PATCH with ``If-Match``, delete,
``$batch`` with change sets, and the Python API tests and the demo use as a CRM user."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults
from sandbox.dynamics.batch import (
    BatchFormatError,
    BatchOperation,
    OperationResult,
    parse_batch,
    render_batch,
)
from sandbox.dynamics.metadata import attribute_id
from sandbox.dynamics.metadata_query import SchemaJournal
from sandbox.dynamics.odata import ODataError, format_datetime, normalize_datetime, parse_prefer
from sandbox.dynamics.schema import CHOICE_TYPES, LOOKUP_TYPES, Attribute
from sandbox.dynamics.store import RecordMissingError, Row, Store, Table

API = "/api/data/v9.2"
MAX_BATCH_OPERATIONS = 1000
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BIND = re.compile(r"^(?:.*/)?(\w+)\(([0-9a-fA-F-]{36})\)$")
_EDM = {"String": "Edm.String", "Memo": "Edm.String", "Integer": "Edm.Int32",
        "BigInt": "Edm.Int64", "Money": "Edm.Decimal", "Decimal": "Edm.Decimal",
        "Double": "Edm.Double", "Boolean": "Edm.Boolean", "DateTime": "Edm.DateTimeOffset",
        "Picklist": "Edm.Int32", "State": "Edm.Int32", "Status": "Edm.Int32"}


def nav_names(attr: Attribute) -> dict[str, str | None]:
    """Single-valued navigation properties of a lookup -> the target they bind (None: any)."""
    base = attr.schema if attr.custom else attr.logical
    if attr.type == "Customer":
        return {f"{attr.logical}_{t}": t for t in attr.targets}
    return {base: None}


class WriteEndpoints:
    """Mixed into the app; relies on its store, faults, lock and reply helpers."""

    store: Store
    faults: Faults
    lock: threading.RLock
    delta_tokens_expired_before: datetime | None
    app_user_id: str
    schema_journal: SchemaJournal

    if TYPE_CHECKING:  # provided by the app class; declared for type checking only

        def _reply(self, data: Any, status: int = 200) -> Response:
            raise NotImplementedError

        def _error(self, status: int, code: str, message: str) -> Response:
            raise NotImplementedError

        def _table(self, name: str) -> Table:
            raise NotImplementedError

        def _base(self, request: Request) -> str:
            raise NotImplementedError

        def _guard(self, request: Request, cost: int = 1) -> Response | None:
            raise NotImplementedError

        def _finish(self, request: Request, response: Response) -> Response:
            raise NotImplementedError

        def render(self, table: Table, row: Row, select: list[str], annotations: str | None
                   ) -> dict[str, Any]:
            raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    def parse_key(self, table: Table, key: str) -> str:
        key = key.strip()
        if key.startswith(f"{table.definition.pk}="):
            key = key.split("=", 1)[1]
        if not _GUID.match(key):
            raise ODataError(f"Bad Request - Error in query syntax: invalid key '{key}'.",
                             code="0x80060888")
        return key.lower()

    def missing(self, table: Table, record_id: str) -> ODataError:
        return ODataError(f"{table.definition.logical} With Id = {record_id} Does Not Exist",
                          code="0x80040217", status=404)

    def coerce(self, table: Table, body: Any) -> Row:
        """A request body as stored values; raises ``ODataError`` as Dataverse words it."""
        if not isinstance(body, dict):
            raise ODataError("The request body must be a JSON object.")
        definition = table.definition
        type_name = f"Microsoft.Dynamics.CRM.{definition.logical}"
        props = definition.by_prop()
        binds = {nav: (a, t) for a in definition.attributes.values() if a.type in LOOKUP_TYPES
                 for nav, t in nav_names(a).items()}
        out: Row = {}
        for key, value in body.items():
            if key.startswith("@odata."):
                continue
            if key.endswith("@odata.bind"):
                nav = key[: -len("@odata.bind")]
                if nav not in binds:
                    raise ODataError(
                        f"An undeclared property '{nav}' which only has property annotations "
                        "in the payload but no property value was found in the payload. In "
                        "OData, only declared navigation properties and declared named streams "
                        "can be represented as properties without values.")
                attr, only = binds[nav]
                out[attr.prop] = self._bind_target(attr, only, value)
                continue
            attr_or_none = props.get(key)
            if attr_or_none is None or attr_or_none.type in LOOKUP_TYPES:
                word = "Invalid property" if attr_or_none else "The property"
                tail = (f"'{key}' was found in entity '{type_name}'." if attr_or_none else
                        f"'{key}' does not exist on type '{type_name}'. Make sure to only use "
                        "property names that are defined by the type or mark the type as open "
                        "type.")
                raise ODataError(f"{word} {tail}")
            attr = attr_or_none
            if not attr.valid_for_update:
                continue  # Dataverse ignores read-only columns in a payload
            out[attr.prop] = self._convert(definition.logical, attr, value)
        return out

    def _bind_target(self, attr: Attribute, only: str | None, value: Any) -> str | None:
        if value is None:
            return None
        match = _BIND.match(str(value))
        if not match:
            raise ODataError(f"Invalid reference '{value}' for '{attr.logical}'.")
        table = self._table(match.group(1))
        target = table.definition.logical
        if target not in attr.targets or (only is not None and target != only):
            raise ODataError(f"Reference to '{target}' is not valid for '{attr.logical}'.")
        record_id = match.group(2).lower()
        if record_id not in table.rows:
            raise self.missing(table, record_id)
        return record_id

    def _convert(self, logical: str, attr: Attribute, value: Any) -> Any:
        if value is None:
            return None
        kind = attr.type
        bad = ODataError(f"Cannot convert the literal '{value}' to the expected type "
                         f"'{_EDM.get(kind, 'Edm.String')}'.")
        if kind in ("String", "Memo"):
            if not isinstance(value, str):
                raise bad
            return value
        if kind == "Boolean":
            if not isinstance(value, bool):
                raise bad
            return value
        if kind in ("Integer", "BigInt") or kind in CHOICE_TYPES:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
            if kind in CHOICE_TYPES and value not in attr.options:
                accepted = ",".join(str(v) for v in attr.options)
                raise ODataError(f"A validation error occurred. The value {value} of "
                                 f"'{attr.logical}' on record of type '{logical}' is outside the "
                                 f"valid range. Accepted Values: {accepted}", code="0x8004431A")
            return value
        if kind in ("Money", "Decimal", "Double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad
            return float(value)
        if kind == "DateTime":
            try:
                if attr.date_only:
                    return date.fromisoformat(str(value)[:10]).isoformat()
                return normalize_datetime(str(value))
            except ValueError as exc:
                raise bad from exc
        raise bad

    def _rejected(self, table: Table, record_id: str, fields: Row) -> Response | None:
        definition = table.definition
        names = [k for k in fields if not k.startswith("@")]
        rule = (self.faults.rejection_for(definition.set_name, record_id, names)
                or self.faults.rejection_for(definition.logical, record_id, names))
        if rule is None:
            return None
        return self._error(400, "0x80040265", rule.message)

    def _entity_id(self, request: Request, table: Table, record_id: str) -> dict[str, str]:
        return {"OData-EntityId": f"{self._base(request)}/{table.definition.set_name}"
                                  f"({record_id})"}

    def _written(self, request: Request, table: Table, row: Row, status: int) -> Response:
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        if prefer.get("return") == "representation":
            body = self.render(table, row, list(table.definition.by_prop()),
                               prefer.get("odata.include-annotations"))
            response = self._reply(body, 201 if status == 201 else 200)
        else:
            response = Response(b"", status=204)
            response.headers["OData-Version"] = "4.0"
        response.headers.update(self._entity_id(request, table, row[table.definition.pk]))
        return response

    # -- endpoints -----------------------------------------------------------------------------
    def create(self, request: Request, set_name: str) -> Response:
        table = self._table(set_name)
        body = orjson.loads(request.get_data() or b"{}")
        pk = table.definition.pk
        record_id = body.pop(pk, None) if isinstance(body, dict) else None
        values = self.coerce(table, body)
        if "ownerid" in table.definition.attributes:
            values.setdefault("_ownerid_value", self.app_user_id)
        if record_id is not None and str(record_id).lower() in table.rows:
            return self._error(412, "0x80040237", "A record with matching key values already "
                                                  "exists.")
        row = self.store.insert(table.definition.logical, values, record_id=record_id)
        return self._written(request, table, row, 201)

    def patch(self, request: Request, set_name: str, key: str) -> Response:
        table = self._table(set_name)
        record_id = self.parse_key(table, key)
        try:
            body = orjson.loads(request.get_data() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ODataError(f"The request body is not valid JSON: {exc}") from exc
        values = self.coerce(table, body)
        row = table.rows.get(record_id)
        if_match = request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        rejected = self._rejected(table, record_id, values)
        if rejected is not None:
            return rejected
        if row is None:
            if if_match is not None:
                raise self.missing(table, record_id)
            if "ownerid" in table.definition.attributes:
                values.setdefault("_ownerid_value", self.app_user_id)
            created = self.store.insert(table.definition.logical, values, record_id=record_id)
            return self._written(request, table, created, 201)
        if if_none_match == "*":
            return self._error(412, "0x80040237", "A record with matching key values already "
                                                  "exists.")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            return self._error(412, "0x80060882", "The version of the existing record doesn't "
                                                  "match the RowVersion property provided.")
        updated = self.store.update(table.definition.logical, record_id, values)
        return self._written(request, table, updated, 200)

    def remove(self, request: Request, set_name: str, key: str) -> Response:
        table = self._table(set_name)
        record_id = self.parse_key(table, key)
        row = table.rows.get(record_id)
        if row is None:
            raise self.missing(table, record_id)
        if_match = request.headers.get("If-Match")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            return self._error(412, "0x80060882", "The version of the existing record doesn't "
                                                  "match the RowVersion property provided.")
        self.store.delete(table.definition.logical, record_id)
        response = Response(b"", status=204)
        response.headers["OData-Version"] = "4.0"
        return response

    def batch(self, request: Request) -> Response:
        try:
            items = parse_batch(request.get_data(), request.content_type or "")
        except BatchFormatError as exc:
            denied = self._guard(request, 1)
            return denied or self._error(400, "0x80060888", str(exc))
        count = sum(len(item.operations) for item in items)
        if count > MAX_BATCH_OPERATIONS:
            denied = self._guard(request, 1)
            return denied or self._error(
                400, "0x80060891", f"The number of operations in the batch ({count}) exceeds "
                                   f"the maximum of {MAX_BATCH_OPERATIONS}.")
        denied = self._guard(request, max(1, count))  # every operation counts as a request
        if denied is not None:
            return denied
        keep_going = "odata.continue-on-error" in parse_prefer(request.headers.getlist("Prefer"))
        groups: list[tuple[bool, list[OperationResult]]] = []
        with self.lock:
            for item in items:
                if item.changeset:
                    self.store.begin()
                    results: list[OperationResult] = []
                    for op in item.operations:
                        results.append(self._run(request, op))
                        if results[-1].status >= 400:
                            break
                    if results[-1].status >= 400:
                        self.store.rollback()
                        groups.append((False, [results[-1]]))
                    else:
                        self.store.commit()
                        groups.append((True, results))
                else:
                    groups.append((False, [self._run(request, item.operations[0])]))
                if groups[-1][1][-1].status >= 400 and not keep_going:
                    break
        body, content_type = render_batch(groups)
        response = Response(body, status=200, content_type=content_type)
        response.headers["OData-Version"] = "4.0"
        return self._finish(request, response)

    def _run(self, outer: Request, op: BatchOperation) -> OperationResult:
        parts = urlsplit(op.url)
        path = parts.path if parts.path.startswith("/") else f"{API}/{parts.path}"
        builder = EnvironBuilder(path=path, query_string=parts.query, method=op.method,
                                 headers=list(op.headers.items()), data=op.body,
                                 base_url=outer.host_url)
        environ = builder.get_environ()
        environ["dynamics.batched"] = True
        request = Request(environ)
        try:
            rule, args = self.url_map.bind_to_environ(environ).match(  # type: ignore[attr-defined]  # url_map lives on SandboxApp
                return_rule=True)
            response: Response = getattr(self, str(rule.endpoint))(request, **args)
        except HTTPException as exc:
            response = self._error(exc.code or 404, "0x80060888",
                                   f"Resource not found for the segment '{path}'.")
        except ODataError as exc:
            response = self._error(exc.status, exc.code, str(exc))
        headers = {k: v for k, v in response.headers.items()
                   if k in ("Content-Type", "OData-Version", "OData-EntityId", "ETag",
                            "Preference-Applied")}
        status_text = response.status.split(" ", 1)
        return OperationResult(response.status_code, status_text[1] if len(status_text) > 1
                               else "", headers, response.get_data(), op.content_id)

    # -- Python API: what a CRM user does in the UI ------------------------------------------
    def create_record(self, table: str, fields: Row, *, modified_at: datetime | None = None,
                      record_id: str | None = None) -> str:
        """Create a row from stored values (lookups as ``_x_value``, choices as ints)."""
        with self.lock:
            stamp = format_datetime(modified_at) if modified_at else None
            values = dict(fields)
            t = self._table(table)
            if "ownerid" in t.definition.attributes:
                values.setdefault("_ownerid_value", self.app_user_id)
            if stamp:
                values.setdefault("createdon", stamp)
                values["modifiedon"] = stamp
            row = self.store.insert(t.definition.logical, values, record_id=record_id,
                                    stamp=stamp)
            return str(row[t.definition.pk])

    def update_record(self, table: str, record_id: str, fields: Row, *,
                      modified_at: datetime | None = None) -> None:
        with self.lock:
            t = self._table(table)
            try:
                self.store.update(t.definition.logical, record_id.lower(), dict(fields),
                                  stamp=format_datetime(modified_at) if modified_at else None)
            except RecordMissingError as exc:
                raise KeyError(f"{t.definition.logical} {record_id} does not exist") from exc

    def delete_record(self, table: str, record_id: str) -> None:
        with self.lock:
            t = self._table(table)
            self.store.delete(t.definition.logical, record_id.lower())

    def get_record(self, table: str, record_id: str) -> Row | None:
        with self.lock:
            t = self._table(table)
            row = t.rows.get(record_id.lower())
            if row is None:
                return None
            return {**dict.fromkeys(t.definition.by_prop()), **row}  # rows are stored sparse

    def corrupt_record(self, table: str, record_id: str, prop: str, raw: Any) -> None:
        """Store a raw value no validation would allow (e.g. a non-date ``modifiedon``)."""
        with self.lock:
            self._table(table).rows[record_id.lower()][prop] = raw
            self.store.poke()

    def drop_attribute(self, table: str, logical: str) -> None:
        with self.lock:
            t = self._table(table)
            attr = t.definition.attributes.pop(logical)
            for row in t.rows.values():
                row.pop(attr.prop, None)
            self.store.poke()
            self.schema_journal.record(t.definition.logical, "attribute-deleted",
                                       attribute_id(t.definition.logical, logical))

    def set_change_tracking(self, table: str, enabled: bool) -> None:
        with self.lock:
            self._table(table).definition.change_tracking = enabled
            self.schema_journal.record(self._table(table).definition.logical, "entity")

    def expire_delta_tokens(self) -> None:
        """Every delta token handed out until now answers the expired-version error."""
        self.delta_tokens_expired_before = self.store.clock()
