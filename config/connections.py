"""Connection settings: one CRM org/account per entry, with a vendor-specific auth shape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, InstanceOf, model_validator
from pydantic.dataclasses import dataclass

from config.mapping import CompiledMapping
from config.secrets import ExistingFile, Secret
from config.types import STRICT, Duration, HttpUrl, Name

VENDORS: tuple[str, ...] = ("salesforce", "hubspot", "pipedrive", "dynamics")
Role = Literal["internal", "distributor"]


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class SalesforceAuth:
    """``jwt``: consumer_key + username + private key; ``client_credentials``: consumer_key +
    consumer_secret (login_url = the My Domain URL); ``session``: session_token + instance_url."""

    flow: Literal["jwt", "client_credentials", "session"] = "jwt"
    consumer_key: str | None = None
    username: str | None = None
    private_key_file: ExistingFile | None = None
    private_key: Secret | None = None
    consumer_secret: Secret | None = None
    session_token: Secret | None = None
    login_url: HttpUrl = "https://login.salesforce.com"
    instance_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _flow_has_its_keys(self) -> SalesforceAuth:
        needed = {
            "jwt": ("consumer_key", "username", "private_key_file|private_key"),
            "client_credentials": ("consumer_key", "consumer_secret"),
            "session": ("session_token", "instance_url"),
        }[self.flow]
        missing = [
            keys.replace("|", " or ")
            for keys in needed
            if all(getattr(self, key) is None for key in keys.split("|"))
        ]
        if missing:
            raise ValueError(f"salesforce flow '{self.flow}' needs {', '.join(missing)}")
        return self


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class HubspotAuth:
    """A private-app access token (``pat-...``)."""

    token: Secret


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class PipedriveAuth:
    """A company user's API token (sent as ``x-api-token``)."""

    api_token: Secret


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class DynamicsAuth:
    """Entra ID client credentials: a client secret, or a certificate and its thumbprint."""

    client_id: str
    tenant_id: str | None = None
    authority_url: HttpUrl | None = None
    client_secret: Secret | None = None
    certificate_file: ExistingFile | None = None
    thumbprint: str | None = None
    scope: str | None = None  # default: the environment URL (base_url) + "/.default"

    @model_validator(mode="after")
    def _one_authority_one_credential(self) -> DynamicsAuth:
        if (self.tenant_id is None) == (self.authority_url is None):
            raise ValueError("dynamics auth needs exactly one of tenant_id or authority_url")
        has_cert = self.certificate_file is not None or self.thumbprint is not None
        if self.client_secret is not None and has_cert:
            raise ValueError(
                "dynamics auth takes client_secret or certificate_file + thumbprint, not both"
            )
        if self.client_secret is None and (
            self.certificate_file is None or self.thumbprint is None
        ):
            raise ValueError("dynamics auth needs client_secret or certificate_file + thumbprint")
        return self

    @property
    def authority(self) -> str:
        return self.authority_url or f"https://login.microsoftonline.com/{self.tenant_id}"


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class ConnectionBase:
    """Fields every connection has. ``mapping`` is compiled by the loader (from the vendor's
    default, a file relative to the config file, or an inline mapping)."""

    name: Name
    role: Role
    mapping: InstanceOf[CompiledMapping]
    distributor_id: Name | None = None
    enabled: bool = True
    base_url: HttpUrl | None = None
    ca_bundle: ExistingFile | None = None
    budget_share: Annotated[float, Field(gt=0, le=1)] = 1.0
    pull_interval: Duration | None = None
    channel_manager: str | None = None  # vendor user id that routed inquiries go to

    @property
    def is_distributor(self) -> bool:
        return self.role == "distributor"


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class SalesforceConnection(ConnectionBase):
    vendor: Literal["salesforce"]
    auth: SalesforceAuth
    api_version: Annotated[str, Field(pattern=r"^\d+\.\d$")] = "66.0"


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class HubspotConnection(ConnectionBase):
    vendor: Literal["hubspot"]
    auth: HubspotAuth


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class PipedriveConnection(ConnectionBase):
    vendor: Literal["pipedrive"]
    auth: PipedriveAuth


@dataclass(frozen=True, slots=True, kw_only=True, config=STRICT)
class DynamicsConnection(ConnectionBase):
    """``base_url`` is the environment URL, e.g. ``https://org.crm4.dynamics.com``."""

    vendor: Literal["dynamics"]
    auth: DynamicsAuth

    @model_validator(mode="after")
    def _has_environment_url(self) -> DynamicsConnection:
        if self.base_url is None:
            raise ValueError(
                "dynamics needs base_url: the environment URL, e.g. https://org.crm.dynamics.com"
            )
        return self

    @property
    def token_scope(self) -> str:
        return self.auth.scope or f"{self.base_url}/.default"


Connection = Annotated[
    SalesforceConnection | HubspotConnection | PipedriveConnection | DynamicsConnection,
    Field(discriminator="vendor"),
]

AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "salesforce": tuple(SalesforceAuth.__dataclass_fields__),
    "hubspot": tuple(HubspotAuth.__dataclass_fields__),
    "pipedrive": tuple(PipedriveAuth.__dataclass_fields__),
    "dynamics": tuple(DynamicsAuth.__dataclass_fields__),
}

__all__ = [
    "AUTH_KEYS",
    "VENDORS",
    "Connection",
    "ConnectionBase",
    "DynamicsAuth",
    "DynamicsConnection",
    "HubspotAuth",
    "HubspotConnection",
    "PipedriveAuth",
    "PipedriveConnection",
    "SalesforceAuth",
    "SalesforceConnection",
]
