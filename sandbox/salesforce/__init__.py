"""A local Salesforce org over HTTPS, for the demo, the tests and the benchmarks.

Start one with :func:`serve_https`; ``app.org`` is the Python API for editing records as a
CRM user would (``create``, ``update``, ``delete``, ``undelete``, ``purge``, ``drop_field``).
"""

from __future__ import annotations

from pathlib import Path

from sandbox.salesforce.app import SalesforceSandbox
from sandbox.salesforce.org import Org, WriteError
from sandbox.serving import RunningSandbox, serve
from sandbox.tls import ensure_tls


def serve_https(app: SalesforceSandbox, tls_dir: Path, *, port: int = 0) -> RunningSandbox:
    """Serve ``app`` over HTTPS on localhost with the sandbox CA from ``tls_dir``; afterwards
    ``app.credentials()`` names the base URL and the CA file."""
    tls = ensure_tls(tls_dir)
    running = serve(app, port=port, tls=tls)
    app.bind(running.base_url, str(tls.ca_file))
    return running


__all__ = ["Org", "SalesforceSandbox", "WriteError", "serve_https"]
