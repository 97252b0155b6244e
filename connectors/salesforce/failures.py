"""Salesforce answers translated into the connector error tree (tables, not if-chains)."""

from __future__ import annotations

import re
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceError

from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    ConnectorError,
    RateLimitedError,
    SchemaDriftError,
    TransientError,
    VendorError,
)
from connectors.http import TRANSPORT_ERRORS, retry_worthy

# errorCode -> error class for whole-request failures (status decides the rest).
ERROR_CODES: dict[str, type[ConnectorError]] = {
    "INVALID_SESSION_ID": AuthError,
    "API_DISABLED_FOR_ORG": AuthError,
    "INSUFFICIENT_ACCESS": AuthError,
    "INVALID_AUTH_HEADER": AuthError,
    "QUERY_TIMEOUT": TransientError,
    "SERVER_UNAVAILABLE": TransientError,
    "UNKNOWN_EXCEPTION": TransientError,
    "INVALID_QUERY_LOCATOR": TransientError,  # the cursor expired: the read restarts later
}
# REQUEST_LIMIT_EXCEEDED covers two limits: the org's daily request allocation ("TotalRequests
# Limit exceeded.") stops the connection until the next cycle; the concurrent long-running
# request limit (ConcurrentPerOrgLongTxn, ...) clears in seconds and is retried.
DAILY_LIMIT_MARK = "TotalRequests"
# Per-record SaveResult statusCodes worth retrying in a later cycle.
RETRYABLE_STATUS = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG", "UNKNOWN_EXCEPTION",
                              "SERVER_UNAVAILABLE"})
_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)'")
_RELATIONSHIP = re.compile(r"Didn't understand relationship '([^']+)'")


def first_error(content: Any) -> tuple[str, str]:
    """(errorCode, message) from Salesforce's error array (or whatever came back)."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "")), str(content[0].get("message", ""))
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("error", "")), str(
            content.get("message") or content.get("error_description", ""))
    return "", str(content)[:200]


def translate(exc: BaseException, *, what: str, entity: str = "") -> ConnectorError:
    """The connector error for a failed call; ``what`` names the call for the message."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, TRANSPORT_ERRORS):
        return TransientError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, requests.exceptions.JSONDecodeError | ValueError):
        return TransientError(f"{what}: the response body was not valid JSON")
    if not isinstance(exc, SalesforceError):
        return VendorError(f"{what}: {type(exc).__name__}: {exc}")
    status = exc.status
    code, message = first_error(exc.content)
    summary = f"{what}: HTTP {status} {code}: {message.strip()[:300]}"
    if code == "REQUEST_LIMIT_EXCEEDED":
        if DAILY_LIMIT_MARK in message:
            return BudgetExhaustedError(
                f"{summary}; the org's daily API requests are spent, resuming next cycle")
        return RateLimitedError(summary, status=status)
    if code == "INVALID_FIELD":
        match = _NO_SUCH_COLUMN.search(message) or _RELATIONSHIP.search(message)
        name = match.group(1) if match else "?"
        return SchemaDriftError(summary, entity=entity, fields=(name,))
    mapped = ERROR_CODES.get(code)
    if mapped is TransientError:
        return TransientError(summary, status=status)
    if mapped is AuthError or status == 401:
        return AuthError(summary)
    if retry_worthy(status):
        return TransientError(summary, status=status)
    return VendorError(summary, status=status, code=code or None)
