"""The Salesforce sandbox's OAuth token endpoint: JWT bearer and client credentials."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user_id: str
    issued_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    """An External Client App: consumer key/secret, JWT certificate, run-as user."""

    consumer_key: str
    consumer_secret: str
    certificate_pem: bytes  # X.509 certificate (or a bare public key) for JWT signatures
    private_key_pem: bytes | None  # kept only so credentials() can hand it to clients
    run_as_user: str | None  # client-credentials user id


def new_connected_app(run_as_user: str | None) -> ConnectedApp:
    """A fresh app with an RSA key pair and a self-signed certificate, as admins upload."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "channelsync-jwt")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    return ConnectedApp(
        consumer_key="3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "b"),
        consumer_secret=secrets.token_hex(32).upper(),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        run_as_user=run_as_user,
    )


def _public_key(pem: bytes) -> Any:
    if b"CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


class TokenIssuer:
    """Checks grants and keeps the sessions it issued."""

    def __init__(self, *, org_id: str, app: ConnectedApp, usernames: dict[str, str],
                 approved: set[str], session_seconds: float = 7200.0) -> None:
        self.org_id = org_id
        self.app = app
        self.usernames = usernames  # username (lower) -> user id
        self.approved = approved  # user ids pre-authorized for the app
        self.session_seconds = session_seconds
        self._public_key = _public_key(app.certificate_pem)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: str) -> Session:
        token = f"{self.org_id[:15]}!AQ" + secrets.token_urlsafe(72)
        session = Session(token, user_id, time.time())
        with self._lock:
            self._sessions[token] = session
        return session

    def session(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(token)
        if session is None or time.time() - session.issued_at > self.session_seconds:
            return None
        return session

    def grant(self, form: dict[str, str], authorization: str | None) -> str:
        """The user id a token request authenticates, or OAuthError."""
        grant_type = form.get("grant_type", "")
        if grant_type == JWT_GRANT:
            return self._jwt(form.get("assertion", ""))
        if grant_type == "client_credentials":
            return self._client_credentials(form, authorization)
        raise OAuthError("unsupported_grant_type", "grant type not supported")

    def _jwt(self, assertion: str) -> str:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.app.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            jwt.decode(assertion, self._public_key, algorithms=["RS256"],
                       options={"verify_aud": False, "verify_exp": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("aud") not in AUDIENCES:
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            expires = float(claims.get("exp", 0))
        except (TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if expires < time.time():
            raise OAuthError("invalid_grant", "expired authorization code")
        user_id = self.usernames.get(str(claims.get("sub", "")).lower())
        if user_id is None or user_id not in self.approved:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user_id

    def _client_credentials(self, form: dict[str, str], authorization: str | None) -> str:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                raise OAuthError("invalid_client", "invalid client credentials") from None
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.app.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not client_secret or not hmac.compare_digest(client_secret,
                                                        self.app.consumer_secret):
            raise OAuthError("invalid_client", "invalid client credentials")
        if self.app.run_as_user is None:
            raise OAuthError("invalid_grant", "no client credentials user enabled")
        return self.app.run_as_user

    def token_response(self, session: Session, instance_url: str) -> dict[str, Any]:
        issued_at = str(int(session.issued_at * 1000))
        identity = f"{instance_url}/id/{self.org_id}/{session.user_id}"
        signature = base64.b64encode(hmac.new(
            self.app.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()).decode()
        return {
            "access_token": session.token,
            "scope": "api",
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        }
