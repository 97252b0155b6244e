"""App-only tokens for Dataverse through msal: a client secret or a certificate."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msal
import requests
import structlog
from msal.exceptions import MsalServiceError

from connectors.errors import AuthError, RateLimitedError, TransientError

log = structlog.get_logger(__name__)

# Entra answers that no retry will fix: the app, its secret/certificate or the scope is wrong.
_FATAL_ERRORS = frozenset({"invalid_client", "unauthorized_client", "invalid_resource",
                           "invalid_scope", "invalid_request", "unsupported_grant_type",
                           "invalid_tenant"})


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A certificate registered on the Entra app: PEM private key plus either the PEM
    public certificate (msal signs PS256 with ``x5t#S256``) or its SHA-1 thumbprint (RS256)."""

    private_key_pem: str
    public_certificate_pem: str | None = None
    thumbprint: str | None = None

    def as_msal(self) -> dict[str, str]:
        credential = {"private_key": self.private_key_pem}
        if self.public_certificate_pem:
            credential["public_certificate"] = self.public_certificate_pem
        elif self.thumbprint:
            credential["thumbprint"] = self.thumbprint
        else:
            raise ValueError("a certificate credential needs the public certificate or its "
                             "thumbprint")
        return credential


class MsalTokenProvider:
    """Client-credentials tokens for ``<environment url>/.default``, cached by msal.

    The msal application is built on first use (msal fetches the authority's discovery
    document in its constructor), through the injected session so the pinned CA applies.
    """

    def __init__(
        self,
        *,
        client_id: str,
        authority: str,
        credential: str | CertificateCredential,
        environment_url: str,
        http_client: requests.Session,
    ) -> None:
        self.client_id = client_id
        self.authority = authority.rstrip("/")
        self.scope = f"{environment_url.rstrip('/')}/.default"
        self._credential: Any = (credential.as_msal()
                                 if isinstance(credential, CertificateCredential) else credential)
        self._http = http_client
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, authority=self.authority,
                    client_credential=self._credential, validate_authority=False,
                    instance_discovery=False, http_client=self._http)
            except (requests.RequestException, MsalServiceError) as exc:
                raise TransientError(f"authority {self.authority} unreachable: "
                                     f"{type(exc).__name__} {str(exc)[:80]}") from exc
            except ValueError as exc:  # discovery refused: wrong tenant or authority URL
                cause = str(exc.__context__ or "")
                if "HTTP status: 429" in cause:
                    raise RateLimitedError("authority discovery throttled") from exc
                raise AuthError(f"authority {self.authority} refused discovery: "
                                f"{str(exc).splitlines()[0][:300]}") from exc
        return self._app

    def token(self, *, fresh: bool = False) -> str:
        """An access token; ``fresh`` drops the cached one (after the API said 401)."""
        with self._lock:
            app = self._application()
            if fresh:
                cache = app.token_cache
                for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(entry)
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except (requests.RequestException, MsalServiceError) as exc:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", "unknown_error"))
        description = str(result.get("error_description", "")).split(" Trace ID:")[0]
        log.warning("dynamics_token_refused", client_id=self.client_id, error=error,
                    codes=result.get("error_codes"))
        if error in _FATAL_ERRORS:
            raise AuthError(f"Entra refused a token for client {self.client_id}: {error}: "
                            f"{description}")
        raise TransientError(f"token request failed: {error}: {description}")
