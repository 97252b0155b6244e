"""Serving a Pipedrive sandbox whose clock may differ from the wall clock.

``sandbox.core.serve`` lets the standard library add a wall-clock ``Date`` header before the
app's own. That is harmless while the sandbox runs on the wall clock; a sandbox on a test
clock must send one ``Date`` (its own), since clients read it to judge which one-second
``update_time`` stamps are final.
"""

from __future__ import annotations

import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.core import RunningSandbox
from sandbox.pipedrive.app import PipedriveSandbox
from sandbox.tls import TlsFiles


class _OwnDateHandler(WSGIRequestHandler):
    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None  # the app's request log counts calls


def serve(
    app: PipedriveSandbox, *, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None
) -> RunningSandbox:
    """Like ``sandbox.core.serve``; only the app's ``Date`` header is sent."""
    ssl_context = (str(tls.cert_file), str(tls.key_file)) if tls else None
    server = make_server(
        host, port, app, threaded=True, ssl_context=ssl_context, request_handler=_OwnDateHandler
    )
    thread = threading.Thread(  # a short poll makes stop() quick in test suites
        target=lambda: server.serve_forever(poll_interval=0.05), name="sandbox-pipedrive",
        daemon=True,
    )
    thread.start()
    return RunningSandbox(app=app, server=server, thread=thread, tls=tls)
