"""What every vendor sandbox shares: fault injection, the request and connection logs,
admin endpoints, JSON responses and a threaded (optionally HTTPS) HTTP/1.1 server with
persistent connections on a free port.

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
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, ClassVar

import orjson
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import ClientDisconnected, LimitedStream, get_content_length

from sandbox.tls import TlsFiles

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


@dataclass
class RunningSandbox:
    """A sandbox app served on a local port in a background thread."""

    app: SandboxApp
    server: BaseWSGIServer
    thread: threading.Thread
    tls: TlsFiles | None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        host, port = self.server.server_address[:2]
        shown = "localhost" if self.tls else (host.decode() if isinstance(host, bytes) else host)
        return f"{scheme}://{shown}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if isinstance(self.server, _SandboxServer):
            self.server.close_idle_connections()
        self.thread.join(timeout=5)


class _SandboxServer(ThreadedWSGIServer):
    """werkzeug's threaded server, with the sandbox's keep-alive handler and an idle timeout.

    Request threads are daemons (werkzeug's default), so stopping never waits for them; it
    closes the connections that sit idle between requests, and the busy ones close when
    their answer is out: a stopped sandbox answers nothing more, as a server that went down.
    """

    def __init__(self, app: SandboxApp, *, host: str, port: int,
                 ssl_context: tuple[str, str] | None, idle_timeout_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._idle: set[socket.socket] = set()
        self._closing = False
        self._idle_lock = threading.Lock()
        super().__init__(host, port, app, _SandboxHandler, ssl_context=ssl_context)

    @property
    def sandbox(self) -> SandboxApp:
        app = self.app  # read per request: tests swap the app of a running server
        assert isinstance(app, SandboxApp)
        return app

    def mark_idle(self, sock: socket.socket) -> bool:
        """``sock`` waits for its next request; ``False`` once the server is stopping."""
        with self._idle_lock:
            if not self._closing:
                self._idle.add(sock)
            return not self._closing

    def mark_busy(self, sock: socket.socket) -> None:
        with self._idle_lock:
            self._idle.discard(sock)

    def close_idle_connections(self) -> None:
        with self._idle_lock:
            self._closing = True
            idle, self._idle = self._idle, set()
        for sock in idle:
            _cut(sock)


class _SandboxHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections, as the vendors' APIs answer.

    werkzeug's own ``run_wsgi`` sends ``Connection: close`` with every answer (after which
    it drains the socket, which would swallow a kept-alive client's next request), so
    answers are written here: framed by their Content-Length, chunked when they have none,
    and the connection is closed whenever the framing cannot be trusted (a dropped or
    truncated answer, an app error mid-body, an HTTP/1.0 client).
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall
    server: _SandboxServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # bounds every read and write
        self.counted = self.server.sandbox.connections
        self.counted.opened()
        if not self.server.mark_idle(self.connection):
            _cut(self.connection)  # accepted just as the server stopped

    def finish(self) -> None:
        self.server.mark_busy(self.connection)  # out of the idle set: it closes now
        self.counted.closed()
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None  # werkzeug logs every request to stderr; the request log counts them

    def log_error(self, format: str, *args: Any) -> None:
        if not format.startswith("Request timed out"):  # an idle connection let go
            super().log_error(format, *args)

    def run_wsgi(self) -> None:
        self.server.mark_busy(self.connection)
        if self.request_version != "HTTP/1.1":
            self.close_connection = True  # no chunked framing for HTTP/1.0: close instead
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        body = _bounded_body(environ)
        try:
            self._answer(environ)
            while body.read(65536):  # what the app left unread, up to the next request
                pass
        except (OSError, ClientDisconnected):  # the peer, or a fault, cut the connection
            self.close_connection = True
        if not self.server.mark_idle(self.connection):
            self.close_connection = True

    def _answer(self, environ: dict[str, Any]) -> None:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], Any]:
            started[:] = [status, headers]
            return _no_write

        try:
            chunks: Iterable[bytes] = self.server.sandbox(environ, start_response)
        except Exception:
            self.log_error("Error on request %s:\n%s", self.requestline, traceback.format_exc())
            chunks = InternalServerError()(environ, start_response)
        try:
            self._write(environ, started[0], started[1], chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _write(self, environ: dict[str, Any], status: str, headers: list[tuple[str, str]],
               chunks: Iterable[bytes]) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        bodyless = environ["REQUEST_METHOD"] == "HEAD" or code < 200 or code in (204, 304)
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        chunked = not (bodyless or length is not None or self.close_connection)
        self.send_response(code, reason)
        for key, value in headers:
            self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif not bodyless and length is None:
            self.close_connection = True  # the body ends where the connection does
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        for data in chunks:
            if data and not bodyless:
                sent += len(data)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        if length is not None and not bodyless and sent != length:
            self.close_connection = True  # a truncated answer: the client waits for no more


def _no_write(data: bytes) -> None:
    raise NotImplementedError("sandbox apps return their body; WSGI write() is not served")


def _bounded_body(environ: dict[str, Any]) -> IO[bytes]:
    """The request body as a stream that ends where the body does: werkzeug hands the app
    the connection's own file, which on a kept-alive connection runs on into the next
    request. Chunked bodies werkzeug already ends itself."""
    if not environ.get("wsgi.input_terminated"):
        length = get_content_length(environ) or 0
        environ["wsgi.input"] = LimitedStream(environ["wsgi.input"], length)
        environ["wsgi.input_terminated"] = True
    stream: IO[bytes] = environ["wsgi.input"]
    return stream


def _cut(sock: socket.socket) -> None:
    """Close ``sock`` under its handler thread, which then reads end of file.

    ``socket.socket.shutdown`` rather than ``SSLSocket.shutdown``, which would drop the TLS
    state another thread may be reading through."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def serve(
    app: SandboxApp, *, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None,
    idle_timeout_s: float = 60.0,
) -> RunningSandbox:
    """Start ``app`` on ``host:port`` (a free port when 0) and return once it accepts.

    Connections stay open between requests, as the vendors' do, until the client closes
    them or they sit idle for ``idle_timeout_s``."""
    ssl_context = (str(tls.cert_file), str(tls.key_file)) if tls else None
    server = _SandboxServer(app, host=host, port=port, ssl_context=ssl_context,
                            idle_timeout_s=idle_timeout_s)
    # a short poll interval: stop() waits for the serving loop to notice the shutdown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-{app.vendor}", daemon=True)
    thread.start()
    return RunningSandbox(app=app, server=server, thread=thread, tls=tls)
