"""Record writes of the Salesforce sandbox: single rows and sObject Collections."""

from __future__ import annotations

import threading
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from sandbox.core import Faults, json_response
from sandbox.salesforce.auth import Session
from sandbox.salesforce.org import Org, WriteError
from sandbox.salesforce.schema import normalize_id
from sandbox.salesforce.soql import format_datetime

MAX_COLLECTION = 200


def sf_error(code: str, message: str, status: int, **extra: Any) -> Response:
    """Salesforce REST errors are a JSON array of ``{message, errorCode}``."""
    return json_response([{"message": message, "errorCode": code, **extra}], status)


class RecordWrites:
    """Endpoints mixed into :class:`sandbox.salesforce.app.SalesforceSandbox`."""

    org: Org
    faults: Faults
    lock: threading.RLock

    def _begin(self, request: Request, version: str) -> Session | Response:
        raise NotImplementedError

    def create_row(self, request: Request, version: str, sobject: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        body = _json_body(request)
        if not isinstance(body, dict):
            return sf_error("JSON_PARSER_ERROR", "The request body must be a JSON object", 400)
        try:
            new_id = self.org.create(sobject, body, by=began.user_id)
        except KeyError:
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        except WriteError as exc:
            return json_response([exc.as_error("errorCode")], 400)
        return json_response({"id": new_id, "success": True, "errors": []}, 201)

    def row(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        try:
            obj = self.org.obj(sobject)
        except KeyError:
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        current = self.org.get(obj.name, record_id)
        if current is None:
            if normalize_id(record_id) is None:
                return sf_error("MALFORMED_ID", f"{obj.name} ID: id value of incorrect type: "
                                f"{record_id}", 400)
            return sf_error("NOT_FOUND", "The requested resource does not exist", 404)
        if current["IsDeleted"]:
            return sf_error("ENTITY_IS_DELETED", "entity is deleted", 404)
        if request.method == "GET":
            out = {"attributes": {"type": obj.name, "url": request.path}, **current}
            return json_response(out)
        if request.method == "DELETE":
            self.org.delete(obj.name, record_id)
            return Response(status=204)
        since = request.headers.get("If-Unmodified-Since")
        if since and _modified_after(current["LastModifiedDate"], since):
            return sf_error("PRECONDITION_FAILED", "The requested resource has been modified "
                            "since the If-Unmodified-Since date", 412)
        body = _json_body(request)
        if not isinstance(body, dict):
            return sf_error("JSON_PARSER_ERROR", "The request body must be a JSON object", 400)
        try:
            self._save(obj.name, current["Id"], body, began.user_id)
        except WriteError as exc:
            return json_response([exc.as_error("errorCode")], 400)
        return Response(status=204)

    def _save(self, obj_name: str, record_id: str, values: dict[str, Any], user: str) -> None:
        rule = self.faults.rejection_for(obj_name, record_id, values)
        if rule is not None:
            raise WriteError("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message,
                             [rule.field] if rule.field else [])
        self.org.update(obj_name, record_id, values, by=user)

    def collections(self, request: Request, version: str) -> Response:
        began = self._begin(request, version)
        if isinstance(began, Response):
            return began
        body = _json_body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return sf_error("JSON_PARSER_ERROR", "Expected a JSON object with 'records'", 400)
        if len(records) > MAX_COLLECTION:
            return sf_error("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                            f"than {MAX_COLLECTION} records into this call", 400)
        all_or_none = bool(body.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        with self.lock:
            before = {name: dict(table) for name, table in self.org.tables.items()} \
                if all_or_none else None
            for record in records:
                results.append(self._collection_item(record, began.user_id))
            failed = any(not r["success"] for r in results)
            if all_or_none and failed and before is not None:
                for name, table in before.items():
                    self.org.tables[name] = table
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                          "message": "Record rolled back because not all records were valid "
                          "and the request was using AllOrNone header", "fields": []}
                results = [r if not r["success"] else {"id": r["id"], "success": False,
                                                       "errors": [rolled]} for r in results]
        return json_response(results)

    def _collection_item(self, record: Any, user: str) -> dict[str, Any]:
        if not isinstance(record, dict):
            return _failed("JSON_PARSER_ERROR", "record must be a JSON object")
        attributes = record.get("attributes") or {}
        obj_name = attributes.get("type") if isinstance(attributes, dict) else None
        record_id = record.get("id") or record.get("Id")
        values = {k: v for k, v in record.items() if k not in ("attributes", "id", "Id")}
        if not obj_name:
            return _failed("INVALID_TYPE", "sObject type must be specified in attributes")
        if not record_id:
            return _failed("MISSING_ARGUMENT", "Id not specified in an update call")
        try:
            obj = self.org.obj(obj_name)
        except KeyError:
            return _failed("INVALID_TYPE", f"sObject type '{obj_name}' is not supported.")
        if normalize_id(str(record_id)) is None:
            return _failed("MALFORMED_ID", f"malformed id {record_id}")
        try:
            self._save(obj.name, str(record_id), values, user)
        except WriteError as exc:
            return {"success": False, "errors": [exc.as_error()]}
        return {"id": normalize_id(str(record_id)), "success": True, "errors": []}


def _failed(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}


def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(request.get_data())
    except orjson.JSONDecodeError:
        return None


def _modified_after(stored: str, http_date: str) -> bool:
    try:
        since = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return False
    return stored > format_datetime(since)
