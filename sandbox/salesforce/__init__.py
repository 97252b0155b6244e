"""A local Salesforce org over HTTPS, for the demo, the tests and the benchmarks.

Start one with :func:`serve_https`; ``app.org`` is the Python API for editing records as a
CRM user would (``create``, ``update``, ``delete``, ``undelete``, ``purge``, ``drop_field``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.core import RunningSandbox
from sandbox.salesforce.app import SalesforceSandbox
from sandbox.salesforce.org import Org, WriteError
from sandbox.tls import ensure_tls


def serve_https(app: SalesforceSandbox, tls_dir: Path, *, port: int = 0) -> RunningSandbox:
    """Serve ``app`` over HTTPS on localhost with the sandbox CA from ``tls_dir``; afterwards
    ``app.credentials()`` names the base URL and the CA file."""
    tls = ensure_tls(tls_dir)
    server = make_server("127.0.0.1", port, app, threaded=True,
                         ssl_context=(str(tls.cert_file), str(tls.key_file)),
                         request_handler=_QuietHandler)
    server.daemon_threads = True  # type: ignore[attr-defined]  # ThreadingMixIn attribute
    # a short poll interval: stop() waits for the serving loop to notice the shutdown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="sandbox-salesforce", daemon=True)
    thread.start()
    running = RunningSandbox(app=app, server=server, thread=thread, tls=tls)
    app.bind(running.base_url, str(tls.ca_file))
    return running


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


__all__ = ["Org", "SalesforceSandbox", "WriteError", "serve_https"]
