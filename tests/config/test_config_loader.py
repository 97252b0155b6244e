"""A valid config loads into typed, frozen values; the example config loads cleanly."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from config.connections import DynamicsConnection, HubspotConnection, SalesforceConnection
from config.loader import DEFAULT_MAPPINGS_DIR, load_settings
from config.models import Settings
from config.secrets import registered_secrets
from tests.config.helpers import ENV, load

FULL = """
store:
  url: "postgresql+psycopg://app:${PG_PASSWORD}@127.0.0.1:5432/test"
schedule:
  cycle_interval: 2m
  pull_interval: 10m
  health_listen: 127.0.0.1:9100
policy:
  registration_term: 120d
  direct_after_release: false
  conflict_precedence: largest_amount
  channel_manager: {sf: 005AAA}
  tiers:
    gold: {registration_term: 180d}
  distributors:
    acme: {tier: gold, warning_window: 7d}
outbox: {max_attempts: 5, backoff_initial: 30s, backoff_max: 1h30m}
matching: {fuzzy_threshold: 92, review_band: 10}
notifications:
  webhook:
    url: https://hooks.example.com/x/
    secret_header: {name: X-Secret, value: {file: hook.secret}}
scorecards:
  period: 2y
  territories: {dach: [de, AT, CH]}
  currency_rates: {usd: 0.92}
  paper_partner: {min_history: 6mo}
logging: {level: debug, format: json}
connections:
  - name: hs-one
    vendor: hubspot
    role: distributor
    distributor_id: acme
    auth: {token: "${HS_TOKEN}"}
    mapping: hs.yaml
    pull_interval: 1h
    budget_share: 0.5
    ca_bundle: ca.pem
  - name: sf
    vendor: salesforce
    role: internal
    enabled: false
    auth: {flow: jwt, consumer_key: "3MVG9", username: u@example.com, private_key_file: key.pem}
    mapping: {entities: {account: {object: Account, fields: {name: Name}}}}
  - name: dyn
    vendor: dynamics
    role: internal
    base_url: https://org.crm4.dynamics.com/
    channel_manager: user-guid
    auth: {tenant_id: t-1, client_id: c-1, client_secret: "${DYN_SECRET:-fallback-secret}"}
    mapping: {entities: {opportunity: {object: opportunities, fields: {name: name}}}}
"""

FILES = {"hook__secret": "hook-secret-value\n", "ca__pem": "-----BEGIN CERTIFICATE-----\n"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    files = {**FILES, "key__pem": "-----BEGIN PRIVATE KEY-----\n"}
    return load(tmp_path, FULL, env={**ENV, "PG_PASSWORD": "pg-pass-123"}, **files)


def test_sections_are_typed(settings: Settings, tmp_path: Path) -> None:
    assert settings.store.url == "postgresql+psycopg://app:pg-pass-123@127.0.0.1:5432/test"
    assert settings.schedule.cycle_interval == timedelta(minutes=2)
    assert settings.schedule.health_listen == "127.0.0.1:9100"
    assert settings.policy.registration_term == timedelta(days=120)
    assert settings.policy.direct_after_release is None
    assert settings.policy.conflict_precedence == "largest_amount"
    assert settings.outbox.backoff_max == timedelta(hours=1, minutes=30)
    assert settings.matching.review_floor == 82.0
    webhook = settings.notifications.webhook
    assert webhook is not None and webhook.url == "https://hooks.example.com/x"
    assert webhook.secret_header is not None
    assert webhook.secret_header.value.get_secret_value() == "hook-secret-value"
    assert settings.scorecards.period == 24
    assert settings.scorecards.paper_partner.min_history == 6
    assert settings.scorecards.territories == {"dach": ("DE", "AT", "CH")}
    assert settings.scorecards.currency_rates == {"USD": Decimal("0.92")}
    assert settings.scorecards.territory_of("AT") == "dach"
    assert settings.logging.level == "DEBUG"


def test_connections_are_vendor_typed(settings: Settings, tmp_path: Path) -> None:
    hs, sf, dyn = settings.connections
    assert isinstance(hs, HubspotConnection) and isinstance(sf, SalesforceConnection)
    assert isinstance(dyn, DynamicsConnection)
    assert hs.auth.token.get_secret_value() == ENV["HS_TOKEN"]
    assert "pat-na1" not in repr(hs)
    assert hs.ca_bundle == tmp_path / "ca.pem"
    assert sf.auth.private_key_file == tmp_path / "key.pem"
    assert dyn.auth.client_secret is not None
    assert dyn.auth.client_secret.get_secret_value() == "fallback-secret"
    assert dyn.auth.authority == "https://login.microsoftonline.com/t-1"
    assert dyn.token_scope == "https://org.crm4.dynamics.com/.default"
    assert [c.name for c in settings.enabled_connections] == ["hs-one", "dyn"]
    assert hs.mapping.source == str(tmp_path / "hs.yaml")
    assert sf.mapping.read_fields("account") == ("Name",)


def test_resolution_helpers(settings: Settings) -> None:
    assert settings.pull_interval("hs-one") == timedelta(hours=1)
    assert settings.pull_interval("sf") == timedelta(minutes=10)
    assert settings.channel_manager_for("sf") == "005AAA"
    assert settings.channel_manager_for("dyn") == "user-guid"
    acme = settings.policy.terms_for("acme")
    assert acme.registration_term == timedelta(days=180)  # from tier gold
    assert acme.warning_window == timedelta(days=7)  # its own
    assert acme.inactivity_limit == timedelta(days=30)  # policy default
    assert settings.policy.terms_for(None).registration_term == timedelta(days=120)


def test_values_are_frozen(settings: Settings) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.policy.registration_term = timedelta(days=1)  # type: ignore[misc]  # assigning is the point
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.connections[0].enabled = False  # type: ignore[misc]  # assigning is the point
    assert isinstance(settings.connections, tuple)


def test_resolved_secrets_are_registered_for_redaction(settings: Settings) -> None:
    _, values = registered_secrets()
    assert {ENV["HS_TOKEN"], "hook-secret-value", "fallback-secret", "pg-pass-123"} <= values


def test_defaults(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
        connections:
          - {name: a, vendor: hubspot, role: internal, auth: {token: x-token}, mapping: hs.yaml}
        """,
    )
    assert settings.store.url == "sqlite:///channelsync.db"
    assert settings.policy.registration_term == timedelta(days=90)
    assert settings.policy.inactivity_limit == timedelta(days=30)
    assert settings.policy.warning_window == timedelta(days=14)
    assert settings.policy.conflict_precedence == "earliest_registration"
    assert settings.policy.direct_after_release == timedelta(0)
    assert settings.scorecards.period == 18
    assert settings.scorecards.paper_partner.min_registrations == 20
    assert settings.scorecards.paper_partner.max_win_rate == 0.15
    assert settings.scorecards.paper_partner.min_history == 12
    assert settings.pull_interval("a") == timedelta(minutes=5)
    assert settings.logging.format == "auto"


EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "channelsync.example.yaml"
EXAMPLE_ENV = {
    "SF_CONSUMER_KEY": "3MVG9example",
    "DYNAMICS_TENANT_ID": "tenant-1",
    "DYNAMICS_CLIENT_ID": "client-1",
    "DYNAMICS_CLIENT_SECRET": "dyn-secret-value",
    "HUBSPOT_TOKEN_NORDIC": "pat-eu1-nordic",
    "HUBSPOT_TOKEN_IBERIA": "pat-eu1-iberia",
    "PIPEDRIVE_TOKEN_ALPINE": "pd-token-alpine",
    "WEBHOOK_SECRET": "hook-secret",
}


def test_example_config_loads_with_its_env_vars(tmp_path: Path) -> None:
    key = tmp_path / "sf.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    settings = load_settings(EXAMPLE, environ={**EXAMPLE_ENV, "SF_PRIVATE_KEY_FILE": str(key)})
    assert [(c.name, c.vendor, c.role) for c in settings.connections] == [
        ("salesforce-emea", "salesforce", "internal"),
        ("dynamics-americas", "dynamics", "internal"),
        ("hubspot-nordic", "hubspot", "distributor"),
        ("hubspot-iberia", "hubspot", "distributor"),
        ("pipedrive-alpine", "pipedrive", "distributor"),
    ]
    for conn in settings.connections:
        assert conn.mapping.entities, conn.name
    assert settings.connections[0].mapping.source == str(DEFAULT_MAPPINGS_DIR / "salesforce.yaml")
    assert settings.policy.terms_for("nordic-systems").registration_term == timedelta(days=180)


def test_example_config_reports_its_missing_env_vars(tmp_path: Path) -> None:
    from config.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE, environ={})
    text = str(caught.value)
    for name in [*EXAMPLE_ENV, "SF_PRIVATE_KEY_FILE"]:
        assert f"environment variable {name} is not set" in text
