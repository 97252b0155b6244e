"""Access tokens for the Salesforce connector: JWT bearer, client credentials, a session.

simple-salesforce builds every login URL as ``https://{domain}.salesforce.com`` and only
re-logs in when it holds the credentials itself, so the connector mints tokens here, hands
``session_id`` + ``instance_url`` to simple-salesforce, and renews on ``INVALID_SESSION_ID``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlparse

import jwt
import requests

from connectors.errors import AuthError, RateLimitedError, TransientError
from connectors.http import TRANSPORT_ERRORS

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class SalesforceToken:
    access_token: str = field(repr=False)
    instance_url: str


class TokenSource(Protocol):
    """Where access tokens come from; ``renewable`` says whether a new one can be minted."""

    @property
    def renewable(self) -> bool: ...

    def mint(self, session: requests.Session) -> SalesforceToken: ...


def _post_token(session: requests.Session, url: str, data: dict[str, str],
                headers: dict[str, str] | None = None) -> SalesforceToken:
    try:
        response = session.post(url, data=data, headers=headers, timeout=60)
    except TRANSPORT_ERRORS as exc:
        raise TransientError(f"token request to {url} failed: {type(exc).__name__}") from None
    if response.status_code >= 500:
        raise TransientError(f"token endpoint answered {response.status_code}",
                             status=response.status_code)
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"token endpoint sent no JSON ({response.status_code})") from None
    if isinstance(body, list) and body and isinstance(body[0], dict) and \
            body[0].get("errorCode") == "REQUEST_LIMIT_EXCEEDED":
        # the login server sheds load the way the REST API does; it clears within seconds
        raise RateLimitedError(f"token endpoint: {body[0].get('message', '')}",
                               status=response.status_code)
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error", response.status_code) if isinstance(body, dict) else ""
        detail = body.get("error_description", "") if isinstance(body, dict) else ""
        raise AuthError(f"Salesforce refused the token request at {url}: {error}: {detail}")
    return SalesforceToken(body["access_token"], body["instance_url"])


def _audience(login_url: str) -> str:
    host = urlparse(login_url).hostname or ""
    if host == "test.salesforce.com" or ".sandbox." in host:
        return "https://test.salesforce.com"
    return "https://login.salesforce.com"


@dataclass(frozen=True, slots=True)
class JwtBearerAuth:
    """OAuth 2.0 JWT bearer flow: an RS256 assertion signed with the app's private key.
    No refresh token exists; a new assertion is minted whenever the session expires."""

    login_url: str  # https://login.salesforce.com, https://test.salesforce.com or My Domain
    consumer_key: str
    username: str
    private_key: str = field(repr=False)  # PEM
    audience: str | None = None  # default: login or test, from login_url
    lifetime_s: int = 180
    renewable: bool = True

    def mint(self, session: requests.Session) -> SalesforceToken:
        claims = {
            "iss": self.consumer_key,
            "sub": self.username,
            "aud": self.audience or _audience(self.login_url),
            "exp": int(time.time()) + self.lifetime_s,
        }
        try:
            assertion = jwt.encode(claims, self.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise AuthError(f"cannot sign the JWT assertion with the configured private key: "
                            f"{type(exc).__name__}") from None
        return _post_token(session, self.login_url.rstrip("/") + "/services/oauth2/token",
                           {"grant_type": JWT_GRANT, "assertion": assertion})


@dataclass(frozen=True, slots=True)
class ClientCredentialsAuth:
    """OAuth 2.0 client credentials (the app's Run-As user); only on the My Domain host."""

    login_url: str  # https://<MyDomain>.my.salesforce.com
    consumer_key: str
    consumer_secret: str = field(repr=False)
    renewable: bool = True

    def mint(self, session: requests.Session) -> SalesforceToken:
        host = urlparse(self.login_url).hostname or ""
        if host in ("login.salesforce.com", "test.salesforce.com"):
            raise AuthError("the client credentials flow only works against the org's My "
                            f"Domain host (https://<domain>.my.salesforce.com), not {host}")
        return _post_token(
            session, self.login_url.rstrip("/") + "/services/oauth2/token",
            {"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + base64.b64encode(
                f"{self.consumer_key}:{self.consumer_secret}".encode()).decode()},
        )


@dataclass(frozen=True, slots=True)
class SessionAuth:
    """An existing session token (tests, or tokens minted elsewhere); cannot be renewed."""

    session_id: str = field(repr=False)
    instance_url: str
    renewable: bool = False

    def mint(self, session: requests.Session) -> SalesforceToken:
        return SalesforceToken(self.session_id, self.instance_url)
