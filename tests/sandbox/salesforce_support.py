"""Helpers for the Salesforce sandbox tests: a served org and a pinned-CA requests session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from sandbox.salesforce import SalesforceSandbox, serve_https
from sandbox.serving import RunningSandbox

VERSION = "66.0"


@dataclass
class Served:
    app: SalesforceSandbox
    running: RunningSandbox
    http: requests.Session

    @property
    def creds(self) -> dict[str, Any]:
        return self.app.credentials()

    @property
    def data(self) -> str:
        return f"{self.running.base_url}/services/data/v{VERSION}"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.creds['session_id']}", **extra}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.http.get(self.data + path, headers=headers, **kwargs)

    def query(self, soql: str, *, all_rows: bool = False, **kwargs: Any) -> requests.Response:
        return self.get("/queryAll" if all_rows else "/query", params={"q": soql}, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.http.patch(self.data + path, json=body, headers=headers, **kwargs)


def start(tls_dir: Path, **options: Any) -> Served:
    app = SalesforceSandbox(**options)
    running = serve_https(app, tls_dir)
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace the pinned CA
    http.verify = app.credentials()["ca_file"]
    return Served(app, running, http)
