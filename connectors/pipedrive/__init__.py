"""Pipedrive connector package: API v2 over plain requests (see ``connector`` for the design)."""

from __future__ import annotations

from connectors.pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConnector"]
