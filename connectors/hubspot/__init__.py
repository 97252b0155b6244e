"""HubSpot connector (hubspot-api-client; all HubSpot paths live in ``api.py``)."""

from __future__ import annotations

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.reading import ASSOCIATED_COMPANY

__all__ = ["ASSOCIATED_COMPANY", "HubSpotApi", "HubSpotConnector"]
