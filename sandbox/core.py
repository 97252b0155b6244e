"""What every vendor sandbox app shares: fault injection, the request and connection logs,
admin endpoints and JSON responses (:mod:`sandbox.serving` serves an app on a port).

A vendor app subclasses :class:`SandboxApp`, lists its werkzeug ``Rule`` objects (each
endpoint names a method of the app) and says how its vendor shapes three errors: a
server error, a rate limit and an expired token. Everything under ``/__sandbox/`` is
the admin surface: never counted, never faulted.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

ADMIN_PREFIX = "/__sandbox/"


@dataclass(slots=True)
class Rejection:
    """A validation rule that makes writes to chosen records fail as the vendor would."""

    object: str  # vendor object name (Opportunity, deals, opportunities, ...) or "*"
    ids: list[str] = field(default_factory=list)  # empty: every record of the object
    field: str | None = None  # only when this field is written
    message: str = "Rejected by a sandbox validation rule"

    def matches(self, obj: str, record_id: str, fields: Iterable[str]) -> bool:
        if self.object not in ("*", obj):
            return False
        if self.ids and record_id not in self.ids:
            return False
        return self.field is None or self.field in set(fields)


@dataclass(slots=True)
class Faults:
    """Failure modes, set at start and changeable while running (``PATCH /__sandbox/faults``).

    Rates are probabilities per request; ``*_next`` fields fail exactly the next N
    requests, which is what deterministic tests want.
    """

    error_rate: float = 0.0
    error_next: int = 0
    latency_ms: int = 0
    drop_rate: float = 0.0
    drop_next: int = 0
    truncate_rate: float = 0.0
    truncate_next: int = 0
    malformed_rate: float = 0.0
    malformed_next: int = 0
    rate_limit_next: int = 0
    rate_limit_all: bool = False
    tokens_expired_before: float = 0.0  # epoch seconds: tokens issued earlier answer 401
    rejections: list[Rejection] = field(default_factory=list)
    seed: int = 0

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(key)
            if key == "rejections":
                value = [Rejection(**r) if isinstance(r, dict) else r for r in value]
            setattr(self, key, value)

    def expire_tokens(self) -> None:
        """Every token issued until now is expired; tokens issued later are valid."""
        self.tokens_expired_before = time.time()

    def token_expired(self, issued_at: float) -> bool:
        return issued_at <= self.tokens_expired_before

    def rejection_for(self, obj: str, record_id: str, fields: Iterable[str]) -> Rejection | None:
        names = list(fields)
        for rule in self.rejections:
            if rule.matches(obj, record_id, names):
                return rule
        return None


class RequestLog:
    """Counts API requests per (method, route) so tests and benchmarks can assert call counts."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, route: str) -> None:
        with self._lock:
            self._counts[(method, route)] += 1

    def count(self, method: str | None = None, route: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (m, r), n in self._counts.items()
                if (method is None or m == method) and (route is None or route in r)
            )

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f"{m} {r}": n for (m, r), n in sorted(self._counts.items())}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class ConnectionLog:
    """Counts the TCP connections a sandbox accepted and how many are open, so tests can
    tell a client that reuses its connections from one that opens one per request (admin
    calls ride the same connections as API calls: they are counted too)."""

    def __init__(self) -> None:
        self._accepted = 0
        self._open = 0
        self._lock = threading.Lock()

    def opened(self) -> None:
        with self._lock:
            self._accepted += 1
            self._open += 1

    def closed(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"accepted": self._accepted, "open": self._open}

    def reset(self) -> None:
        """Start counting accepted connections afresh; open ones stay open."""
        with self._lock:
            self._accepted = 0


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        headers=headers,
        content_type="application/json;charset=UTF-8",
    )


def iso_now() -> datetime:
    return datetime.now(UTC)


class SandboxApp:
    """Base WSGI app: routing, request log, faults, admin endpoints."""

    vendor: ClassVar[str] = ""

    def __init__(self, *, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.requests = RequestLog()
        self.connections = ConnectionLog()  # kept by the server that serves this app
        self.lock = threading.RLock()  # guards the vendor's data
        self._rng = random.Random(self.faults.seed)
        self._fault_lock = threading.Lock()
        self.url_map = Map(list(self.rules()), strict_slashes=False, merge_slashes=False)

    # -- what a vendor provides -------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        raise NotImplementedError

    def error_server(self) -> Response:
        return json_response({"message": "Internal server error"}, 500)

    def error_rate_limited(self) -> Response:
        return json_response({"message": "Too many requests"}, 429, {"Retry-After": "1"})

    def error_token_expired(self) -> Response:
        return json_response({"message": "Token expired"}, 401)

    def admin(self, request: Request, action: str) -> Response | None:
        """Vendor-specific admin actions under ``/__sandbox/``; ``None`` when unknown."""
        return None

    def credentials(self) -> dict[str, Any]:
        """What a client needs to connect (tokens, client ids, ...)."""
        return {}

    # -- plumbing ---------------------------------------------------------------------
    def _take(self, counter: str, rate: float) -> bool:
        with self._fault_lock:
            pending = getattr(self.faults, counter)
            if pending > 0:
                setattr(self.faults, counter, pending - 1)
                return True
            return rate > 0 and self._rng.random() < rate

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request)(environ, start_response)
        response = self._dispatch(request, environ)
        return response(environ, start_response)

    def _dispatch(self, request: Request, environ: dict[str, Any]) -> Response:
        adapter = self.url_map.bind_to_environ(environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except HTTPException as exc:
            self.requests.record(request.method, request.path)
            return self.not_found(request, exc)
        self.requests.record(request.method, rule.rule)
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if self._take("drop_next", faults.drop_rate):
            _drop_connection(environ)
            return Response(b"", status=500)
        if faults.rate_limit_all or self._take("rate_limit_next", 0.0):
            return self.error_rate_limited()
        if self._take("error_next", faults.error_rate):
            return self.error_server()
        try:
            response: Response = getattr(self, str(rule.endpoint))(request, **args)
        except HTTPException as exc:
            return self.not_found(request, exc)
        if self._take("truncate_next", faults.truncate_rate):
            return _truncated(response, environ)
        if self._take("malformed_next", faults.malformed_rate):
            return Response(
                b'{"records": [{"Id": "0',
                status=response.status_code,
                content_type=response.content_type,
            )
        return response

    def not_found(self, request: Request, exc: HTTPException) -> Response:
        code = exc.code or 404
        return json_response({"message": exc.description or "Not found"}, code)

    def _admin(self, request: Request) -> Response:
        action = request.path[len(ADMIN_PREFIX) :].strip("/")
        if action == "faults":
            if request.method in ("PATCH", "PUT", "POST"):
                try:
                    values = dict(request.get_json(force=True))
                    if values.pop("expire_tokens", False):
                        self.faults.expire_tokens()
                    self.faults.update(values)
                except (KeyError, TypeError, ValueError) as exc:
                    return json_response({"error": f"unknown or bad fault setting: {exc}"}, 400)
            return json_response(asdict(self.faults))
        if action == "requests":
            if request.method == "DELETE":
                self.requests.reset()
            return json_response(self.requests.snapshot())
        if action == "connections":
            if request.method == "DELETE":
                self.connections.reset()
            return json_response(self.connections.snapshot())
        if action == "credentials":
            return json_response(self.credentials())
        answer = self.admin(request, action)
        if answer is None:
            raise NotFound()
        return answer


def _drop_connection(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _truncated(response: Response, environ: dict[str, Any]) -> Response:
    body = response.get_data()
    cut = body[: max(1, len(body) // 2)]

    def stream() -> Iterator[bytes]:
        yield cut
        _drop_connection(environ)

    out = Response(stream(), status=response.status_code, headers=dict(response.headers))
    out.headers["Content-Length"] = str(len(body))
    return out
