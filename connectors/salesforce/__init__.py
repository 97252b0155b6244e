"""Salesforce connector (simple-salesforce): incremental pulls, deletes, describe, writes.

Building one from credentials::

    session = make_session(ca_bundle=ca_file)          # pinned CA, REQUESTS_CA_BUNDLE-proof
    connector = SalesforceConnector(
        session=session,
        auth=JwtBearerAuth(login_url=login_url, consumer_key=key, username=user,
                           private_key=pem),           # or ClientCredentialsAuth / SessionAuth
        retry=RetryPolicy(),
        quota=daily_quota(share=0.25),
        api_version="66.0",
    )
"""

from __future__ import annotations

from connectors.http import QuotaGovernor
from connectors.salesforce.auth import (
    ClientCredentialsAuth,
    JwtBearerAuth,
    SalesforceToken,
    SessionAuth,
    TokenSource,
)
from connectors.salesforce.connector import (
    API_VERSION,
    MAX_BATCH,
    MAX_COLLECTION,
    SalesforceConnector,
)


def daily_quota(*, share: float = 1.0, limit: int | None = None) -> QuotaGovernor:
    """The governor for one org's rolling 24-hour API request allocation; the limit is
    learnt from ``Sforce-Limit-Info`` after the first call when not given."""
    return QuotaGovernor(unit="requests", window="day", limit=limit, share=share)


__all__ = [
    "API_VERSION",
    "MAX_BATCH",
    "MAX_COLLECTION",
    "ClientCredentialsAuth",
    "JwtBearerAuth",
    "SalesforceConnector",
    "SalesforceToken",
    "SessionAuth",
    "TokenSource",
    "daily_quota",
]
