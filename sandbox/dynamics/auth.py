"""An Entra-ID-like authority for the Dataverse sandbox: OpenID discovery and the
client-credentials token endpoint (client secret or a certificate-signed assertion)."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME_S = 3599
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(slots=True)
class AppRegistration:
    client_id: str
    secret: str | None = None
    certificate_pem: str | None = None  # public certificate registered on the app
    private_key_pem: str | None = None  # kept only so credentials() can hand it to tests
    application_user: bool = True  # without one, tokens are issued but Dataverse refuses

    def thumbprints(self) -> dict[str, str]:
        """base64url SHA-1 (``x5t``) and SHA-256 (``x5t#S256``) of the certificate."""
        if not self.certificate_pem:
            return {}
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return {
            "x5t": _b64url(cert.fingerprint(hashes.SHA1())),  # RFC 7515 x5t is SHA-1
            "x5t#S256": _b64url(cert.fingerprint(hashes.SHA256())),
        }

    def sha1_hex(self) -> str | None:
        if not self.certificate_pem:
            return None
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return cert.fingerprint(hashes.SHA1()).hex().upper()  # the thumbprint Entra shows is SHA-1


@dataclass(frozen=True, slots=True)
class Grant:
    client_id: str
    audience: str
    issued_at: float
    expires_at: float


@dataclass(slots=True)
class TokenError(Exception):
    status: int
    error: str
    code: int
    description: str
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
                                 f"Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_certificate(common_name: str = "channelsync-dataverse") -> tuple[str, str]:
    """A self-signed certificate and its private key (PEM), as an app registration uses."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now.replace(year=now.year - 1))
        .not_valid_after(now.replace(year=now.year + 2))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


class Authority:
    """Issues app-only tokens for ``<environment url>/.default``."""

    def __init__(self, *, tenant_id: str, apps: list[AppRegistration]) -> None:
        self.tenant_id = tenant_id
        self.apps = {a.client_id: a for a in apps}
        self.grants: dict[str, Grant] = {}
        self._signing_key = secrets.token_bytes(32)

    def discovery(self, base: str) -> dict[str, Any]:
        root = f"{base}/{self.tenant_id}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{self.tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def issue(self, form: dict[str, str], *, base: str, environment_url: str) -> dict[str, Any]:
        """Answer the token endpoint, or raise ``TokenError`` shaped as Entra does."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type "
                             f"'{form.get('grant_type')}'.")
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            raise TokenError(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the "
                             f"directory '{self.tenant_id}'. This can happen if the application "
                             "has not been installed by the administrator of the tenant.")
        if form.get("client_assertion"):
            self._verify_assertion(app, form, token_endpoint=f"{base}/{self.tenant_id}"
                                                             "/oauth2/v2.0/token")
        elif form.get("client_secret") is not None:
            if not app.secret or not secrets.compare_digest(app.secret, form["client_secret"]):
                raise TokenError(401, "invalid_client", 7000215,
                                 "Invalid client secret provided. Ensure the secret being sent "
                                 "in the request is the client secret value, not the client "
                                 f"secret ID, for a secret added to app '{client_id}'.")
        else:
            raise TokenError(400, "invalid_client", 7000216,
                             "'client_assertion', 'client_secret' or 'request' is required "
                             "for the 'client_credentials' grant type.")
        scope = form.get("scope", "")
        audience = self._audience(scope, environment_url)
        now = time.time()
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{self.tenant_id}/",
                  "iat": int(now), "nbf": int(now), "exp": int(now) + TOKEN_LIFETIME_S,
                  "appid": client_id, "tid": self.tenant_id, "oid": str(uuid.uuid4()),
                  "uti": secrets.token_urlsafe(8), "ver": "1.0"}
        token = jwt.encode(claims, self._signing_key, algorithm="HS256")
        self.grants[token] = Grant(client_id, audience, now, now + TOKEN_LIFETIME_S)
        return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S,
                "ext_expires_in": TOKEN_LIFETIME_S, "access_token": token}

    def _audience(self, scope: str, environment_url: str) -> str:
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenError(400, "invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client "
                             "credential flows must have a scope value with /.default suffixed "
                             "to the resource identifier (application ID URI).")
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource.lower() != environment_url.rstrip("/").lower():
            raise TokenError(400, "invalid_resource", 500011,
                             f"The resource principal named {resource} was not found in the "
                             f"tenant named {self.tenant_id}. This can happen if the "
                             "application has not been installed by the administrator of the "
                             "tenant or consented to by any user in the tenant.")
        return environment_url.rstrip("/")

    def _verify_assertion(self, app: AppRegistration, form: dict[str, str], *,
                          token_endpoint: str) -> None:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise TokenError(400, "invalid_request", 50027,
                             "client_assertion_type must be "
                             f"'{CLIENT_ASSERTION_TYPE}'.")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise TokenError(400, "invalid_request", 50027,
                             f"Invalid JWT token. {exc}") from exc
        prints = app.thumbprints()
        if not prints or not any(str(header.get(k, "")).rstrip("=") == v
                                 for k, v in prints.items()):
            raise TokenError(401, "invalid_client", 700027,
                             "The certificate with identifier used to sign the client "
                             f"assertion is not registered on application. [Reason - The key "
                             f"was not found., Thumbprint of key used by client: "
                             f"'{header.get('x5t#S256') or header.get('x5t')}']")
        public_key = x509.load_pem_x509_certificate(
            (app.certificate_pem or "").encode()).public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise TokenError(401, "invalid_client", 700027, "Only RSA certificates are supported.")
        try:
            claims = jwt.decode(
                assertion, public_key, algorithms=["RS256", "PS256"],
                audience=[token_endpoint, token_endpoint.replace("/oauth2/v2.0/", "/oauth2/")],
                options={"require": ["exp", "aud", "iss", "sub"]}, leeway=300,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(401, "invalid_client", 700024,
                             "Client assertion is not within its valid time range.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError(401, "invalid_client", 700212,
                             "No matching federated identity record found for presented "
                             f"assertion audience '{token_endpoint}'.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(401, "invalid_client", 700027,
                             f"Client assertion failed signature validation. {exc}") from exc
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise TokenError(401, "invalid_client", 700021,
                             "Client assertion application identifier doesn't match "
                             "'client_id' parameter.")

    def check(self, token: str) -> Grant | None:
        return self.grants.get(token)
