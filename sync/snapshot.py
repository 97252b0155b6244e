"""The rules' view of the store: customers matched across CRMs and the records as facts.

Matching results are saved as customer links and review items; each record becomes an
account or opportunity fact that knows whether its owner value and expiry date are ours
(in the ledger or in an open outbox item) or a person's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from connectors.base import Entity
from rules.matching import Decision, MatchResult
from rules.model import AccountFact, OpportunityFact, RecordKey, Snapshot, positional_builder
from state.rows import AccountRow, OpportunityRow, ReviewItemIn
from sync.cycle import Runtime
from sync.plan import same_value


def as_decision(d: Any) -> Decision:
    """A person's stored verdict on two accounts, as matching takes it."""
    return Decision((d.a.connection, d.a.external_id), (d.b.connection, d.b.external_id),
                    d.verdict)


def review_rows(result: MatchResult) -> list[ReviewItemIn]:
    """The uncertain pairs of a match, as review items to store."""
    return [
        ReviewItemIn(
            a=account_key(item.a),
            b=account_key(item.b),
            score=item.score,
            evidence={"method": item.method, "evidence": list(item.evidence)},
        )
        for item in result.review
    ]


def account_key(key: tuple[str, str]) -> Any:
    from state.rows import RecordKey as StoreKey

    return StoreKey(key[0], "account", key[1])


def build_snapshot(
    *,
    accounts: Sequence[AccountRow],
    opportunities: Sequence[OpportunityRow],
    links: Mapping[tuple[str, str], str],
    runtimes: Mapping[str, Runtime],
    ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]],
    in_flight: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
) -> Snapshot:
    """The rules' view of the store. ``ledgers`` holds what we last wrote per connection and
    ``in_flight`` what open outbox items are writing (a write that reached the CRM but whose
    booking was lost in a crash is still open): an owner value or a registration expiry
    date equal to either is ours; any other was set by a person."""
    makers = fact_makers(runtimes, ledgers, in_flight)
    account_facts = []
    for a in accounts:
        maker = makers.get(a.connection)
        if maker is None:
            continue
        account_facts.append(maker.account(
            a.external_id, a.name, a.country, a.channel_owner, a.partner_id, a.owner_user,
            a.deleted, links.get((a.connection, a.external_id))))
    opp_facts = []
    for o in opportunities:
        maker = makers.get(o.connection)
        if maker is None:
            continue
        opp_facts.append(maker.opportunity(
            o.external_id, o.name, o.account_ref, o.amount, o.currency, o.stage_category,
            o.close_date, o.created_at, o.modified_at or o.vendor_modified_at,
            o.last_activity_at, o.owner_user, o.registered_by, o.registered_at,
            o.registration_expires_at, o.registration_status, o.registration_decision,
            o.reassign_to, o.deleted,
            links.get((o.connection, o.account_ref)) if o.account_ref else None))
    return Snapshot(accounts=tuple(account_facts), opportunities=tuple(opp_facts))


def fact_makers(
    runtimes: Mapping[str, Runtime],
    ledgers: Mapping[str, Mapping[tuple[str, str, str], Any]],
    in_flight: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
) -> dict[str, FactMaker]:
    """One :class:`FactMaker` per connection."""
    return {name: FactMaker(rt, _Written(rt, ledgers.get(name, {}),
                                         (in_flight or {}).get(name)))
            for name, rt in runtimes.items()}


_account_fact = positional_builder(AccountFact)
_opportunity_fact = positional_builder(OpportunityFact)
_STAGES = {"open": "open", "won": "won", "lost": "lost"}


class FactMaker:
    """One connection's records as facts, from plain values (a row's attributes, or a
    query's columns): what depends on the connection alone is worked out once, and the
    "is this value ours" check is skipped where nothing was ever written."""

    __slots__ = ("_check_expiry", "_check_owner", "connection", "distributor",
                 "distributor_id", "party", "role", "written")

    def __init__(self, runtime: Runtime, written: _Written) -> None:
        self.connection = runtime.name
        self.role = _role(runtime)
        self.distributor_id = runtime.distributor_id
        self.distributor = runtime.role == "distributor"
        self.party = runtime.distributor_id or "unknown-distributor"
        self.written = written
        self._check_owner = written.may_hold("account", "channel_owner")
        self._check_expiry = written.may_hold("opportunity", "registration_expires_at")

    def use(self, ledger: Mapping[tuple[str, str, str], Any],
            open_items: Mapping[tuple[str, str, str], Any] | None) -> None:
        """Check against these values of what we wrote (those of the records about to be
        made facts: a streamed evaluation reads them a batch at a time)."""
        self.written.ledger, self.written.open_items = ledger, open_items or {}
        self._check_owner = self.written.may_hold("account", "channel_owner")
        self._check_expiry = self.written.may_hold("opportunity", "registration_expires_at")

    def account(self, external_id: str, name: str | None, country: str | None,
                channel_owner: str | None, partner_id: str | None, owner_user: str | None,
                deleted: bool, customer_id: str | None) -> AccountFact:
        ours = self._check_owner and self.written.is_ours(
            "account", external_id, "channel_owner", channel_owner)
        return _account_fact(
            RecordKey(self.connection, "account", external_id), customer_id, self.role,
            self.distributor_id, name, country, channel_owner, partner_id, owner_user,
            deleted, ours)

    def opportunity(
        self, external_id: str, name: str | None, account_ref: str | None, amount: Any,
        currency: str | None, stage_category: str | None, close_date: date | None,
        created_at: datetime | None, modified_at: datetime | None,
        last_activity_at: datetime | None, owner_user: str | None,
        registered_by: str | None, registered_at: datetime | None,
        expires: date | None, status: str | None, decision: str | None,
        reassign_to: str | None, deleted: bool, customer_id: str | None,
    ) -> OpportunityFact:
        """``modified_at``: the record's, else the vendor's modification time."""
        connection = self.connection
        expiry_is_ours = expires is None or (self._check_expiry and self.written.is_ours(
            "opportunity", external_id, "registration_expires_at", expires))
        if self.distributor:
            party = self.party
            registered_by = self.distributor_id if registered_at else None
        else:
            party = registered_by or "direct"
        return _opportunity_fact(
            RecordKey(connection, "opportunity", external_id), customer_id, self.role,
            self.distributor_id,
            RecordKey(connection, "account", account_ref) if account_ref else None,
            party, name, amount, currency, _STAGES.get(stage_category, "open"),  # type: ignore[arg-type]  # None: open
            close_date, created_at, modified_at, last_activity_at, owner_user,
            registered_by, registered_at, expires, expiry_is_ours, status, decision,
            reassign_to, deleted)


def _role(rt: Runtime) -> Any:
    return "distributor" if rt.role == "distributor" else "internal"


class _Written:
    """What we wrote to one connection: the ledger, and the values of open outbox items."""

    __slots__ = ("fields", "ledger", "open_items", "runtime")

    def __init__(
        self,
        runtime: Runtime,
        ledger: Mapping[tuple[str, str, str], Any],
        open_items: Mapping[tuple[str, str, str], Any] | None,
    ) -> None:
        self.runtime, self.ledger, self.open_items = runtime, ledger, open_items or {}
        self.fields = _write_specs(runtime.mapping)

    def may_hold(self, entity: str, output: str) -> bool:
        """Can any value of ``output`` be ours? Not when it is no write-back field, or when
        nothing was written to the connection or is being written (a new store)."""
        return output in self.fields[entity] and bool(self.ledger or self.open_items)

    def is_ours(self, entity: str, external_id: str, output: str, value: Any) -> bool:
        """Is ``value`` (as read, canonical) what we last wrote to ``output`` of the record?

        The ledger holds the vendor value we sent, the row the value read back through the
        mapping, so compare in vendor terms as the planner does: a value map must not make
        our own write look like a person's (an owner set by hand wins over the rules, and a
        later expiry date a person typed must never count as an extension)."""
        if value is None:
            return False
        spec = self.fields[entity].get(output)
        if spec is None:
            return False
        key = (entity, external_id, spec.field)
        sent = self.ledger.get(key, _NOT_WRITTEN)
        writing = self.open_items.get(key, _NOT_WRITTEN) if self.open_items else _NOT_WRITTEN
        if sent is _NOT_WRITTEN and writing is _NOT_WRITTEN:
            return False  # the common case at scale: never written, no lookup beyond this
        text = value.isoformat() if value.__class__ is date else value
        if sent == text or writing == text:  # as we sent it, most of the time: no conversion
            return True
        candidates = [v for v in (sent, writing) if v is not _NOT_WRITTEN]
        try:
            vendor_value = spec.to_vendor(value)
        except ValueError:  # a value the write map does not know was not written by us
            vendor_value = _NOT_WRITTEN
        return any(same_value(v, value) or same_value(v, vendor_value) for v in candidates)


_NOT_WRITTEN = object()
# id(mapping) -> (mapping, entity -> output -> write spec): build_snapshot also runs once per
# customer (sync.scale), and the mapping (kept here so its id stays its own) never changes
_SPECS: dict[int, tuple[Any, dict[str, dict[str, Any]]]] = {}


def _write_specs(mapping: Any) -> dict[str, dict[str, Any]]:
    found = _SPECS.get(id(mapping))
    if found is None or found[0] is not mapping:
        found = _SPECS[id(mapping)] = (
            mapping, {e.value: dict(mapping.writes(e)) for e in Entity})
    return found[1]



def snapshot_from_store(store: Any, runtimes: Sequence[Runtime]) -> Snapshot:
    """The rules' view of the store with the customer links of the last cycle."""
    by_name = {rt.name: rt for rt in runtimes}
    accounts = [a for a in store.load_accounts() if a.connection in by_name]
    opportunities = [o for o in store.load_opportunities() if o.connection in by_name]
    links = {(k.connection, k.external_id): v for k, v in store.customer_links().items()}
    ledgers = {rt.name: store.ledger(rt.name) for rt in runtimes}
    return build_snapshot(
        accounts=accounts,
        opportunities=opportunities,
        links=links,
        runtimes=by_name,
        ledgers=ledgers,
    )
