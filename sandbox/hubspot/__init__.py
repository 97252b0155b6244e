"""HubSpot CRM API sandbox (private-app token, v3 objects/search/batch, v4 associations)."""

from __future__ import annotations

from sandbox.hubspot.account import HubSpotAccount
from sandbox.hubspot.app import HubSpotSandbox

__all__ = ["HubSpotAccount", "HubSpotSandbox"]
