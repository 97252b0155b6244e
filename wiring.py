"""The composition root's builders: the only place that creates sessions, SDK clients,
connectors and the store from validated settings. ``main.py`` and the demo call these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from config.models import Settings
from connectors.base import Connector
from connectors.http import Pacer, QuotaGovernor, RetryPolicy, make_session
from rules.matching import MatchSettings
from rules.model import Policy
from rules.scorecards import ScorecardConfig
from state.store import Store
from sync.cycle import Runtime
from sync.push import Backoff

Sleep = Callable[[float], None]


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _ca(conn: Any) -> str | None:
    return str(conn.ca_bundle) if conn.ca_bundle else None


def build_salesforce(conn: Any, retry: RetryPolicy) -> Connector:
    from connectors.salesforce import (
        ClientCredentialsAuth,
        JwtBearerAuth,
        SalesforceConnector,
        SessionAuth,
        daily_quota,
    )

    auth = conn.auth
    token_source: Any
    if auth.flow == "jwt":
        key = (
            Path(auth.private_key_file).read_text()
            if auth.private_key_file
            else _secret(auth.private_key)
        )
        token_source = JwtBearerAuth(
            login_url=str(conn.base_url or auth.login_url),
            consumer_key=auth.consumer_key,
            username=auth.username,
            private_key=key,
        )
    elif auth.flow == "client_credentials":
        token_source = ClientCredentialsAuth(
            login_url=str(conn.base_url or auth.login_url),
            consumer_key=auth.consumer_key,
            consumer_secret=_secret(auth.consumer_secret),
        )
    else:
        token_source = SessionAuth(
            session_id=_secret(auth.session_token), instance_url=str(auth.instance_url)
        )
    return SalesforceConnector(
        session=make_session(ca_bundle=_ca(conn)),
        auth=token_source,
        retry=retry,
        quota=daily_quota(share=conn.budget_share),
        api_version=conn.api_version,
        name=conn.name,
    )


def build_hubspot(conn: Any, retry: RetryPolicy, sleep: Sleep) -> Connector:
    from hubspot import HubSpot

    from connectors.hubspot import HubSpotConnector

    options: dict[str, Any] = {"access_token": _secret(conn.auth.token)}
    if conn.base_url:
        options["host"] = str(conn.base_url).rstrip("/")
    if conn.ca_bundle:
        options["ssl_ca_cert"] = str(conn.ca_bundle)
    return HubSpotConnector(
        client=HubSpot(**options),
        retry=retry,
        quota=QuotaGovernor(unit="requests", window="day", limit=None, share=conn.budget_share),
        pacer=Pacer(sleep=sleep),
        burst_share=conn.budget_share,
        connection=conn.name,
        sleep=sleep,
    )


def build_pipedrive(conn: Any, retry: RetryPolicy, sleep: Sleep) -> Connector:
    from connectors.pipedrive import PipedriveConnector

    return PipedriveConnector(
        session=make_session(ca_bundle=_ca(conn)),
        base_url=str(conn.base_url or "https://api.pipedrive.com").rstrip("/"),
        api_token=_secret(conn.auth.api_token),
        retry=retry,
        quota=QuotaGovernor(unit="tokens", window="day", limit=None, share=conn.budget_share),
        pacer=Pacer(sleep=sleep),
        connection=conn.name,
    )


def build_dynamics(conn: Any, retry: RetryPolicy) -> Connector:
    from connectors.dynamics import DynamicsConnector
    from connectors.dynamics.auth import CertificateCredential, MsalTokenProvider

    auth = conn.auth
    session = make_session(ca_bundle=_ca(conn))
    credential: Any
    if auth.certificate_file:
        pem = Path(auth.certificate_file).read_text()
        public = pem if "BEGIN CERTIFICATE" in pem else None
        credential = CertificateCredential(
            private_key_pem=pem, public_certificate_pem=public, thumbprint=auth.thumbprint
        )
    else:
        credential = _secret(auth.client_secret)
    environment = str(conn.base_url).rstrip("/")
    tokens = MsalTokenProvider(
        client_id=auth.client_id,
        authority=auth.authority,
        credential=credential,
        environment_url=environment,
        http_client=session,
    )
    return DynamicsConnector(
        session=session,
        environment_url=environment,
        token_provider=tokens,
        retry=retry,
        quota=QuotaGovernor(unit="requests", window="5min", limit=6000, share=conn.budget_share),
        connection=conn.name,
    )


def build_connector(
    conn: Any, *, sleep: Sleep = time.sleep, retry: RetryPolicy | None = None
) -> Connector:
    retry = retry or RetryPolicy(sleep=sleep)
    if conn.vendor == "salesforce":
        return build_salesforce(conn, retry)
    if conn.vendor == "hubspot":
        return build_hubspot(conn, retry, sleep)
    if conn.vendor == "pipedrive":
        return build_pipedrive(conn, retry, sleep)
    if conn.vendor == "dynamics":
        return build_dynamics(conn, retry)
    raise ValueError(f"unknown vendor {conn.vendor!r}")


@dataclass(slots=True)
class Wiring:
    """Lazily built pieces of one process, from one validated ``Settings``."""

    settings: Settings
    sleep: Sleep = time.sleep
    _store: Store | None = None
    _runtimes: list[Runtime] | None = field(default=None)
    # when each connection was last pulled in this process (per-connection pull intervals)
    last_pulled: dict[str, datetime] = field(default_factory=dict)

    def store(self) -> Store:
        if self._store is None:
            self._store = Store.from_url(self.settings.store.url)
            self._store.migrate()
        return self._store

    def runtimes(self) -> list[Runtime]:
        if self._runtimes is None:
            s = self.settings
            self._runtimes = [
                Runtime(
                    name=c.name,
                    vendor=c.vendor,
                    role=c.role,
                    distributor_id=c.distributor_id,
                    channel_manager=s.channel_manager_for(c.name),
                    connector=build_connector(c, sleep=self.sleep),
                    mapping=c.mapping,
                    pull_interval=s.pull_interval(c.name),
                )
                for c in s.enabled_connections
            ]
        return self._runtimes

    def policy(self) -> Policy:
        return Policy.from_settings(self.settings.policy)

    def match_settings(self) -> MatchSettings:
        m = self.settings.matching
        return MatchSettings(fuzzy_merge=m.fuzzy_threshold, fuzzy_review=m.review_floor)

    def scorecards(self) -> ScorecardConfig:
        return ScorecardConfig.from_settings(self.settings.scorecards)

    def backoff(self) -> Backoff:
        o = self.settings.outbox
        return Backoff(
            max_attempts=o.max_attempts,
            initial=o.backoff_initial,
            maximum=o.backoff_max,
        )

    def close(self) -> None:
        for rt in self._runtimes or []:
            rt.connector.close()
        if self._store is not None:
            self._store.close()
