"""Writing to Dataverse: ``$batch`` of independent PATCHes, each guarded by ``If-Match``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from connectors.base import RecordUpdate, WriteResult
from connectors.dynamics.metadata import CHOICE_TYPES, LOOKUP_TYPES, Column, TableMeta
from connectors.dynamics.wire import (
    STALE_ROW_CODE,
    BatchPart,
    PartAnswer,
    decode_batch,
    encode_batch,
)
from connectors.errors import TransientError, VendorError

if TYPE_CHECKING:
    from connectors.dynamics.connector import DynamicsConnector

log = structlog.get_logger(__name__)


class Writer:
    def __init__(self, connector: DynamicsConnector) -> None:
        self.c = connector
        self._set_names: dict[str, str] = {}
        self._targets: dict[tuple[str, str], tuple[str, ...]] = {}

    def write(self, meta: TableMeta, updates: Sequence[RecordUpdate]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(updates)
        ready: list[tuple[int, BatchPart]] = []
        for index, update in enumerate(updates):
            try:
                body = self.payload(meta, update.fields)
            except ValueError as exc:
                results[index] = WriteResult(update.id, ok=False, error=str(exc),
                                             code="invalid_value")
                continue
            # If-Match: * keeps PATCH from creating a row that was deleted meanwhile
            headers = {"If-Match": update.etag or "*"}
            url = f"{self.c.api_url}{meta.set_name}({update.id})"
            ready.append((index, BatchPart("PATCH", url, headers, body)))
        size = self.c.batch_size
        for start in range(0, len(ready), size):
            chunk = ready[start:start + size]
            answers = self._send(meta, [part for _, part in chunk])
            for position, (index, _) in enumerate(chunk):
                answer = answers[position] if position < len(answers) else None
                results[index] = _result(updates[index].id, answer)
        done = [r for r in results if r is not None]
        log.info("dynamics_written", entity=meta.entity.value, updates=len(updates),
                 ok=sum(r.ok for r in done), conflicts=sum(r.conflict for r in done))
        return done

    def _send(self, meta: TableMeta, parts: list[BatchPart]) -> list[PartAnswer]:
        body, content_type = encode_batch(parts)

        def attempt() -> list[PartAnswer]:
            response = self.c.send("POST", f"{self.c.api_url}$batch", what="write_batch",
                                   cost=len(parts), data=body,
                                   headers={"Content-Type": content_type,
                                            "Prefer": "odata.continue-on-error"})
            self.c.raise_for_client_error(response, "write_batch")
            try:
                return decode_batch(response.content, response.headers.get("Content-Type", ""))
            except ValueError as exc:
                raise TransientError(f"write_batch: unreadable response ({exc})") from exc

        return self.c.retry.call(attempt, what="dynamics_write_batch")

    def payload(self, meta: TableMeta, fields: Any) -> dict[str, Any]:
        """Field values as the Web API takes them; ``ValueError`` names the bad one."""
        body: dict[str, Any] = {}
        for name, value in fields.items():
            column = meta.columns.get(name)
            if column is None:
                raise ValueError(f"{meta.set_name} has no column '{name}'")
            if not column.writable:
                raise ValueError(f"{meta.set_name}.{name} is not valid for update")
            if column.kind in LOOKUP_TYPES:
                nav, reference = self._bind(meta, column, value)
                body[f"{nav}@odata.bind"] = reference
                continue
            body[column.logical] = _convert(meta, column, value)
        return body

    def _bind(self, meta: TableMeta, column: Column, value: Any) -> tuple[str, str | None]:
        if value is None:
            return column.nav, None
        text = str(value)
        if text.startswith("/") and text.endswith(")"):
            set_name = text[1:text.index("(")]
            target = next((t for t, s in self._set_names.items() if s == set_name), set_name)
            record_id = text[text.index("(") + 1:-1]
        else:
            target, record_id = self._targets_of(meta, column)[0], text
        set_name = self._set_name(target)
        nav = f"{column.logical}_{target}" if column.kind == "Customer" else column.nav
        return nav, f"/{set_name}({record_id})"

    def _targets_of(self, meta: TableMeta, column: Column) -> tuple[str, ...]:
        key = (meta.logical, column.logical)
        if key not in self._targets:
            data = self.c.get_json(
                f"{self.c.api_url}EntityDefinitions(LogicalName='{meta.logical}')/Attributes("
                f"LogicalName='{column.logical}')/Microsoft.Dynamics.CRM.LookupAttributeMetadata"
                "?$select=LogicalName,Targets", what="describe_lookup")
            self._targets[key] = tuple(data.get("Targets") or ())
            if not self._targets[key]:
                raise ValueError(f"{meta.set_name}.{column.logical} has no lookup targets")
        return self._targets[key]

    def _set_name(self, logical: str) -> str:
        if logical not in self._set_names:
            data = self.c.get_json(f"{self.c.api_url}EntityDefinitions(LogicalName='{logical}')"
                                   "?$select=EntitySetName", what="describe_target")
            self._set_names[logical] = str(data["EntitySetName"])
        return self._set_names[logical]


def _convert(meta: TableMeta, column: Column, value: Any) -> Any:
    if value is None:
        return None
    kind = column.kind
    where = f"{meta.set_name}.{column.logical}"
    if kind in CHOICE_TYPES:
        return column.option_value(value)
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where} takes true/false, not {value!r}")
    if kind in ("Money", "Decimal", "Double"):
        try:
            return float(Decimal(str(value)))
        except ArithmeticError as exc:
            raise ValueError(f"{where} takes a number, not {value!r}") from exc
    if kind in ("Integer", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} takes a whole number, not {value!r}")
        return value
    if kind == "DateTime":
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)
    return value if isinstance(value, str) else str(value)


def _result(record_id: str, answer: PartAnswer | None) -> WriteResult:
    if answer is None:
        return WriteResult(record_id, ok=False, error="no answer for this operation in the "
                                                      "batch response", retryable=True)
    if answer.status < 300:
        return WriteResult(record_id, ok=True)
    error = answer.body.get("error") or {}
    code = str(error.get("code") or answer.status)
    message = str(error.get("message") or f"HTTP {answer.status}")
    if answer.status == 412 or code == STALE_ROW_CODE:
        return WriteResult(record_id, ok=False, error="the row changed since it was read: "
                           + message, code=code, conflict=True)
    return WriteResult(record_id, ok=False, error=message, code=code,
                       retryable=answer.status == 429 or answer.status >= 500)


__all__ = ["VendorError", "Writer"]
