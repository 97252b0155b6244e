"""Dynamics 365 / Dataverse connector (requests + msal, Web API v9.2).

Reads use change tracking (``Prefer: odata.track-changes`` and delta links) on tables
whose ``ChangeTrackingEnabled`` is true, falling back to a full resync (pages marked
``full_refresh``) when the delta token has expired; other tables are read by
``modifiedon ge <since - lookback>`` ordered by (modifiedon, id) with de-duplication by
row version. ``Record.fields`` carries columns by Web API property name (lookups as
``_<lookup>_value`` GUIDs; a lookup's logical name gives the related row's display name),
choices as their labels; the primary key and ``modifiedon`` come along. Writes go out as
``$batch`` requests of up to 1000 independent PATCHes, each with ``If-Match`` (the row's
etag, or ``*`` so a deleted row is never re-created); a 412 becomes
``WriteResult(conflict=True)``. Choice labels are turned into option values, lookups into
``<navigation property>@odata.bind``.
"""

from __future__ import annotations

from connectors.dynamics.auth import CertificateCredential, MsalTokenProvider
from connectors.dynamics.connector import DeltaExpiredError, DynamicsConnector, TokenSource

__all__ = [
    "CertificateCredential",
    "DeltaExpiredError",
    "DynamicsConnector",
    "MsalTokenProvider",
    "TokenSource",
]
