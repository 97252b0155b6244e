"""``$batch`` wire format: multipart/mixed requests (with change sets) and responses."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)


class BatchFormatError(ValueError):
    pass


@dataclass(slots=True)
class BatchOperation:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass(slots=True)
class BatchItem:
    """One top-level part: a single operation, or a change set of several."""

    operations: list[BatchOperation]
    changeset: bool = False


@dataclass(slots=True)
class OperationResult:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if not match or not content_type.lower().startswith("multipart/mixed"):
        raise BatchFormatError("The batch request must be multipart/mixed with a boundary.")
    return match.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise BatchFormatError(f"Boundary '{boundary}' not found in the batch body.")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.strip(b"\r\n"))
    return parts


def _headers_and_rest(blob: bytes) -> tuple[dict[str, str], bytes]:
    normalized = blob.replace(b"\r\n", b"\n")
    head, _, rest = normalized.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _operation(part: bytes) -> BatchOperation:
    part_headers, http = _headers_and_rest(part)
    if not part_headers.get("content-type", "").lower().startswith("application/http"):
        raise BatchFormatError("Each batch part must have Content-Type: application/http.")
    request_line, _, rest = http.lstrip(b"\n").partition(b"\n")
    words = request_line.decode().split()
    if len(words) < 2:
        raise BatchFormatError(f"Bad request line in batch part: {request_line!r}")
    headers, body = _headers_and_rest(rest)
    return BatchOperation(words[0].upper(), words[1], headers, body.strip(),
                          part_headers.get("content-id"))


def parse_batch(body: bytes, content_type: str) -> list[BatchItem]:
    items: list[BatchItem] = []
    for part in _split(body, boundary_of(content_type)):
        headers, rest = _headers_and_rest(part)
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            inner = _split(rest, boundary_of(kind))
            ops = [_operation(p) for p in inner]
            if any(op.method == "GET" for op in ops):
                raise BatchFormatError("GET requests are not allowed inside a change set.")
            items.append(BatchItem(ops, changeset=True))
        else:
            items.append(BatchItem([_operation(part)]))
    return items


def _render_result(result: OperationResult) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if result.content_id:
        lines.append(f"Content-ID: {result.content_id}")
    lines += ["", f"HTTP/1.1 {result.status} {result.reason}"]
    lines += [f"{k}: {v}" for k, v in result.headers.items()]
    lines.append("")
    return "\r\n".join(lines).encode() + b"\r\n" + result.body


def render_batch(groups: list[tuple[bool, list[OperationResult]]]) -> tuple[bytes, str]:
    """Body and Content-Type of a batch response; change sets nest their own boundary."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[bytes] = []
    for changeset, results in groups:
        out.append(f"--{boundary}\r\n".encode())
        if changeset:
            inner = f"changesetresponse_{uuid.uuid4()}"
            out.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode())
            for result in results:
                out.append(f"--{inner}\r\n".encode() + _render_result(result) + b"\r\n")
            out.append(f"--{inner}--\r\n".encode())
        else:
            out.append(_render_result(results[0]) + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/mixed; boundary={boundary}"
