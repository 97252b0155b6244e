"""What the shared connector contract suite needs from each vendor: a sandbox, a connector
pointed at it, and ways to change the sandbox's data as a CRM user would.

Each vendor provides ``tests/connectors/harness_<vendor>.py`` with a ``make_harness()``
function returning an object that satisfies :class:`Harness`. Harness methods act on the
sandbox's data directly (never through the connector under test).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from connectors.base import Connector, Entity
from connectors.http import QuotaGovernor, RetryPolicy
from sandbox.core import SandboxApp


class Harness(Protocol):
    vendor: str
    app: SandboxApp  # the running sandbox's app: faults, request log, data

    def connector(
        self,
        *,
        page_size: int | None = None,
        retry: RetryPolicy | None = None,
        quota: QuotaGovernor | None = None,
        timeout_s: float | None = None,
    ) -> Connector:
        """A new connector for the sandbox; its default RetryPolicy must not really sleep.
        ``retry``, ``quota`` and ``timeout_s`` replace the harness's defaults."""
        ...

    def quota(self, *, share: float, limit: int) -> QuotaGovernor:
        """The governor ``wiring.py`` builds for this vendor with ``share``, after setting the
        vendor's budget to ``limit`` (its unit: requests or tokens) with nothing spent yet.
        Its clock is the harness's, which :meth:`renew_budget` moves on."""
        ...

    def renew_budget(self) -> None:
        """The vendor's budget window moves on (a new day, the 5-minute window slides): the
        next cycle may spend again. Moves the harness clock past any re-check interval."""
        ...

    def fields(self, entity: Entity) -> Sequence[str]:
        """Vendor field names to pass to ``read`` (include ``writable_field``)."""
        ...

    def writable_field(self, entity: Entity) -> str:
        """A custom text field the connector can write (as named in ``Record.fields``)."""
        ...

    def min_page_size(self) -> int:
        """Smallest page size the vendor honours (Salesforce: 200)."""
        ...

    def create(
        self, entity: Entity, count: int, *, modified_at: datetime | None = None
    ) -> list[str]:
        """Add ``count`` records as a user would; all share ``modified_at`` when given
        (to make cursor ties), else each gets a distinct, later timestamp. Returns vendor ids
        in creation order. Opportunities are attached to some existing or new account."""
        ...

    def modify(self, entity: Entity, record_id: str, field: str, value: Any) -> None:
        """A user edit: sets the field (as named in ``Record.fields``) and bumps the
        record's modified timestamp to now."""
        ...

    def delete(self, entity: Entity, record_id: str) -> None:
        """Delete the way this vendor's users do (recycle bin, archive, status deleted...)."""
        ...

    def stored_value(self, entity: Entity, record_id: str, field: str) -> Any:
        """The field's value as the sandbox stores it now, in the form ``Record.fields`` gives."""
        ...

    def drop_field(self, entity: Entity, field: str) -> None:
        """Remove a field from the CRM's schema (schema drift)."""
        ...

    def reject_writes(self, entity: Entity, record_ids: Sequence[str]) -> None:
        """Install a validation rule that makes writes to these records fail."""
        ...

    def corrupt(self, entity: Entity, record_id: str) -> None:
        """Make the record's stored payload undecodable for the connector (e.g. a modified
        timestamp that is not a date) while keeping it listable."""
        ...

    def stop(self) -> None:
        """Stop the sandbox server."""
        ...
