"""Serving a sandbox app: a threaded (optionally HTTPS) HTTP/1.1 server with persistent
connections on a free port, as the vendors' APIs serve.

werkzeug 3.1's ``run_wsgi`` sends ``Connection: close`` with every answer whatever the
protocol version, so the handler here writes answers itself: framed by Content-Length
(chunked when the app gives none), the request body bounded and whatever the app left
unread skipped, an idle timeout, and the connection closed whenever the framing cannot be
trusted. The server's ``Date`` and ``Server`` headers give way to an app's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import ClientDisconnected, LimitedStream, get_content_length

from sandbox.core import SandboxApp
from sandbox.tls import TlsFiles


@dataclass
class RunningSandbox:
    """A sandbox app served on a local port in a background thread."""

    app: SandboxApp
    server: SandboxServer
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
        self.server.close_idle_connections()
        self.thread.join(timeout=5)


class SandboxServer(ThreadedWSGIServer):
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
    server: SandboxServer

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
        self.send_response_only(code, reason)
        given = {key.lower() for key, _ in headers}
        if "server" not in given:
            self.send_header("Server", self.version_string())
        if "date" not in given:  # Pipedrive's sandbox dates answers by its own clock
            self.send_header("Date", self.date_time_string())
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
    server = SandboxServer(app, host=host, port=port, ssl_context=ssl_context,
                           idle_timeout_s=idle_timeout_s)
    # a short poll interval: stop() waits for the serving loop to notice the shutdown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-{app.vendor}", daemon=True)
    thread.start()
    return RunningSandbox(app=app, server=server, thread=thread, tls=tls)
