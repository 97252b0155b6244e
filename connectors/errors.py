"""Connector errors, classified by what the caller does next.

::

    ConnectorError
    +-- TransientError          retry later: 5xx, timeouts, dropped connections, 429
    |   +-- RateLimitedError    the vendor said slow down (carries Retry-After when given)
    +-- ConnectionFailedError   stop this connection for this cycle, say why, touch no data
    |   +-- AuthError           credentials refused or expired beyond refresh
    |   +-- SchemaDriftError    a mapped field is gone from the CRM (names it)
    |   +-- BudgetExhaustedError  the connection's share of the vendor quota is spent
    |   +-- VendorError         a non-retriable vendor answer we cannot act on
    +-- (per record) RecordRejected values inside WriteResult / SkippedRecord, never raised

The retry policy in :mod:`connectors.http` retries only ``TransientError``; everything
else propagates to the sync layer, which fails the connection for the cycle.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error a connector raises."""


class TransientError(ConnectorError):
    """A failure worth retrying after a pause."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(TransientError):
    """The vendor asked us to slow down; ``retry_after`` is in seconds when known."""

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ConnectionFailedError(ConnectorError):
    """The connection cannot go on this cycle; the message says why."""


class AuthError(ConnectionFailedError):
    """Credentials were refused, or a token expired and could not be renewed."""


class SchemaDriftError(ConnectionFailedError):
    """A field the mapping needs no longer exists (or changed type) in the CRM."""

    def __init__(self, message: str, *, entity: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.entity = entity
        self.fields = fields


class BudgetExhaustedError(ConnectionFailedError):
    """This connection's share of the vendor budget is spent; resume next cycle."""


class VendorError(ConnectionFailedError):
    """The vendor answered with an error that retrying will not fix."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
