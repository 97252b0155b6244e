"""Dataverse Web API wire details: OData literals, Prefer headers, ``$batch`` bodies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_PAGE_SIZE = 5000
MAX_BATCH = 1000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
DELETED_SUFFIX = "/$deletedEntity"
EXPIRED_DELTA_CODES = frozenset({"0x80044352"})  # ExpiredVersionStamp: do a full sync
STALE_ROW_CODE = "0x80060882"
_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})", re.MULTILINE)


def odata_literal(value: Any) -> str:
    """A ``$filter`` literal: strings quoted with '' escaping, datetimes unquoted UTC."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def format_filter(template: str, **values: Any) -> str:
    """Build a ``$filter`` the way ``format_soql`` builds SOQL: every value escaped."""
    return template.format(**{k: odata_literal(v) for k, v in values.items()})


def prefer(page_size: int, *, track_changes: bool = False, annotations: bool = False) -> str:
    parts = [f"odata.maxpagesize={page_size}"]
    if track_changes:
        parts.append("odata.track-changes")
    if annotations:
        parts.append(f'odata.include-annotations="{FORMATTED}"')
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class BatchPart:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PartAnswer:
    status: int
    body: dict[str, Any]


def encode_batch(parts: Sequence[BatchPart]) -> tuple[bytes, str]:
    """A ``multipart/mixed`` batch, one independent operation per part (no change set,
    so each succeeds or fails on its own)."""
    boundary = f"batch_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for part in parts:
        lines = [f"--{boundary}", "Content-Type: application/http",
                 "Content-Transfer-Encoding: binary", "", f"{part.method} {part.url} HTTP/1.1",
                 "Content-Type: application/json; charset=utf-8"]
        lines += [f"{k}: {v}" for k, v in part.headers.items()]
        lines += ["", ""]
        chunks.append("\r\n".join(lines).encode())
        chunks.append(orjson.dumps(part.body) if part.body is not None else b"")
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/mixed; boundary={boundary}"


def decode_batch(body: bytes, content_type: str) -> list[PartAnswer]:
    """Status and JSON body of each part of a batch response, in order."""
    match = _BOUNDARY.search(content_type or "")
    if not match:
        raise ValueError(f"batch response without a multipart boundary ({content_type!r})")
    delimiter = b"--" + match.group(1).encode()
    answers: list[PartAnswer] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        nested = _BOUNDARY.search(chunk[:300].decode("latin-1"))
        if nested and b"multipart/mixed" in chunk[:300].lower():
            answers.extend(decode_batch(chunk, f"multipart/mixed; boundary={nested.group(1)}"))
            continue
        status = _STATUS_LINE.search(chunk)
        if status is None:
            continue
        rest = chunk[status.end():].replace(b"\r\n", b"\n")
        _, _, payload = rest.partition(b"\n\n")
        payload = payload.strip()
        try:
            data = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            data = {"error": {"code": "", "message": payload[:300].decode("utf-8", "replace")}}
        answers.append(PartAnswer(int(status.group(1)), data if isinstance(data, dict) else {}))
    return answers
