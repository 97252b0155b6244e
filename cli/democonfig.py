"""A ready ``channelsync.yaml`` for a running set of sandboxes (the demo's and the tests').

Secrets go to files beside the config (mode 0600) and the config refers to them with
``{file: ...}``: even the demo keeps secrets out of the YAML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sandbox.launch import LaunchedSandbox, SandboxSet


def _secret_file(directory: Path, name: str, value: str) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value)
    os.chmod(path, 0o600)
    return {"file": str(path.resolve())}


def connection_entry(sandbox: LaunchedSandbox, secrets: Path) -> dict[str, Any]:
    creds = sandbox.credentials()
    name = sandbox.connection
    entry: dict[str, Any] = {"name": name, "vendor": sandbox.vendor, "role": sandbox.role}
    if sandbox.distributor_id:
        entry["distributor_id"] = sandbox.distributor_id
    if sandbox.ca_file:
        entry["ca_bundle"] = str(Path(sandbox.ca_file).resolve())
    if sandbox.vendor == "salesforce":
        key_path = secrets / f"{name}-jwt-key.pem"
        _secret_file(secrets, key_path.name, creds["private_key_pem"])
        entry["auth"] = {
            "flow": "jwt",
            "consumer_key": creds["consumer_key"],
            "username": creds["username"],
            "private_key_file": str(key_path.resolve()),
            "login_url": creds["login_url"],
        }
        entry["api_version"] = creds.get("api_version", "66.0")
    elif sandbox.vendor == "dynamics":
        entry["base_url"] = creds["environment_url"]
        entry["auth"] = {
            "client_id": creds["client_id"],
            "authority_url": creds["authority"],
            "client_secret": _secret_file(secrets, f"{name}-client-secret", creds["client_secret"]),
        }
    elif sandbox.vendor == "hubspot":
        entry["base_url"] = sandbox.base_url
        entry["auth"] = {"token": _secret_file(secrets, f"{name}-token", creds["access_token"])}
    elif sandbox.vendor == "pipedrive":
        entry["base_url"] = sandbox.base_url
        entry["auth"] = {"api_token": _secret_file(secrets, f"{name}-token", creds["api_token"])}
    return entry


def write_config(
    sandboxes: SandboxSet,
    directory: Path,
    *,
    store_url: str | None = None,
    channel_managers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``channelsync.yaml`` (and its secret files) for these sandboxes; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets = directory / "secrets"
    document: dict[str, Any] = {
        "store": {"url": store_url or f"sqlite:///{(directory / 'channelsync.db').resolve()}"},
        "schedule": {"cycle_interval": "1m", "health_listen": "127.0.0.1:0"},
        "policy": {
            "registration_term": "90d",
            "inactivity_limit": "30d",
            "warning_window": "14d",
            "channel_manager": dict(channel_managers or {}),
        },
        "scorecards": {
            "period": "18m",
            "base_currency": "EUR",
            # fixed demo rates: 1 unit of X in EUR (reports name the rates they used)
            "currency_rates": {
                "USD": 0.92,
                "GBP": 1.17,
                "CHF": 1.05,
                "SEK": 0.087,
                "JPY": 0.0061,
                "CAD": 0.67,
                "AUD": 0.60,
                "BRL": 0.17,
                "SGD": 0.69,
                "MXN": 0.050,
                "DKK": 0.134,
                "NOK": 0.085,
            },
            "territories": {
                "dach": ["DE", "AT", "CH"],
                "uk_ireland": ["GB", "IE"],
                "benelux": ["NL", "BE"],
                "southern_europe": ["FR", "ES", "IT"],
                "nordics": ["SE", "DK", "FI", "NO"],
                "americas": ["US", "CA", "BR", "MX"],
                "apac": ["JP", "AU", "SG"],
            },
        },
        "logging": {"level": "WARNING"},
        "connections": [connection_entry(s, secrets) for s in sandboxes],
    }
    document.update(extra or {})
    path = directory / "channelsync.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
