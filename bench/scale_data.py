"""A sandbox scenario written straight into a store (no HTTP), for large-store benchmarks.

Accounts and deals come from :func:`sandbox.scenario.generate` (realistic names for
matching); ``deal_copies`` adds copies of every deal (``<key>~<n>``) to reach two deals
per account; ``max_deals`` cuts the total. Rows go through ``Store.apply_page`` in big
pages, so they are stored exactly as a pull stores them, each with the vendor payload a
pull keeps (``raw``: each vendor field its vendor's default mapping reads, holding the
canonical value as JSON carries it: the size and shape of a pulled payload, about 600
bytes a deal), which is most of a stored row's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from config.mapping_compiler import load_mapping_file
from sandbox.world import CrmSeed, SeedAccount, SeedDeal, World

PAGE = 50_000
MAPPINGS = Path(__file__).resolve().parent.parent / "config" / "mappings"
# what a read returns beside the mapped fields: the record's id and change stamp
SYSTEM_FIELDS = {"salesforce": ("Id", "SystemModstamp"), "hubspot": ("hs_object_id",
                 "hs_lastmodifieddate"), "pipedrive": ("id", "update_time"),
                 "dynamics": ("@odata.etag", "modifiedon")}


@cache
def _vendor_fields(vendor: str, entity: str) -> tuple[tuple[str, str], ...]:
    """(vendor field, canonical field) of each field the default mapping reads."""
    mapping, doc = load_mapping_file(MAPPINGS / f"{vendor}.yaml", f"{vendor}.yaml", vendor)
    if mapping is None:
        raise RuntimeError(f"default {vendor} mapping does not compile: {doc.problems}")
    fields = mapping.entity(entity).fields.values()
    return tuple((spec.field, spec.canonical) for spec in fields)


def _wire(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def raw_payload(vendor: str, entity: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A canonical row -> the vendor fields a pull of it would have stored."""
    fields = _vendor_fields(vendor, entity)
    system = SYSTEM_FIELDS[vendor]

    def payload(row: dict[str, Any]) -> dict[str, Any]:
        out = {system[0]: row["external_id"], system[1]: _wire(row.get("modified_at"))}
        out.update((field, _wire(row.get(canonical))) for field, canonical in fields)
        return out

    return payload


def account_row(a: SeedAccount) -> dict[str, Any]:
    return {"external_id": a.key, "name": a.name, "domain": a.website, "country": a.country,
            "duns": a.duns, "vat_id": a.vat_id, "owner_user": a.owner_user,
            "channel_owner": a.channel_owner, "partner_id": a.partner_id,
            "created_at": a.created_at, "modified_at": a.modified_at}


def deal_row(d: SeedDeal, suffix: str = "") -> dict[str, Any]:
    return {"external_id": d.key + suffix, "name": d.name, "account_ref": d.account_key,
            "amount": d.amount, "currency": d.currency, "stage_category": d.stage,
            "close_date": d.close_date, "created_at": d.created_at,
            "modified_at": d.modified_at, "last_activity_at": d.last_activity_at,
            "owner_user": d.owner_user, "registered_by": d.registered_by,
            "registered_at": d.registered_at, "registration_status": d.registration_status,
            "registration_expires_at": d.registration_expires_at,
            "registration_decision": d.registration_decision, "reassign_to": d.reassign_to}


def _deals(crm: CrmSeed, copies: int) -> Iterator[dict[str, Any]]:
    for d in crm.deals:
        yield deal_row(d)
    for n in range(1, copies + 1):
        for d in crm.deals:
            yield deal_row(d, f"~{n}")


def fill_store(store: Any, world: World, *, deal_copies: int = 0,
               max_deals: int | None = None) -> tuple[int, int]:
    """Write the world's records into ``store``; returns (accounts, deals) written."""
    run_id = store.start_run(trigger="bench-fill")
    accounts = deals = 0
    budget = max_deals
    for crm in world.crms:
        rows = [account_row(a) for a in crm.accounts]
        _with_raw(rows, raw_payload(crm.vendor, "account"))
        for start in range(0, len(rows), PAGE):
            _page(store, crm.connection, "account", rows[start:start + PAGE], run_id)
        accounts += len(rows)
        page: list[dict[str, Any]] = []
        for row in _deals(crm, deal_copies):
            if budget is not None and budget <= 0:
                break
            page.append(row)
            if budget is not None:
                budget -= 1
            if len(page) >= PAGE:
                _with_raw(page, raw_payload(crm.vendor, "opportunity"))
                _page(store, crm.connection, "opportunity", page, run_id)
                deals += len(page)
                page = []
        if page:
            _with_raw(page, raw_payload(crm.vendor, "opportunity"))
            _page(store, crm.connection, "opportunity", page, run_id)
            deals += len(page)
    store.finish_run(run_id, status="ok", counts={"accounts": accounts, "deals": deals},
                     error=None)
    return accounts, deals


def _with_raw(rows: list[dict[str, Any]], payload: Callable[[dict[str, Any]], dict[str, Any]]
              ) -> None:
    for row in rows:
        row["raw"] = payload(row)


def _page(store: Any, connection: str, entity: str, rows: list[dict[str, Any]],
          run_id: int) -> None:
    result = store.apply_page(connection=connection, entity=entity, rows=rows, deleted_ids=[],
                              skipped=[], cursor={"bench": True}, run_id=run_id,
                              full_refresh=False)
    if result.skipped:
        raise RuntimeError(f"{connection}/{entity}: {result.skipped} rows rejected")


class NoWrites:
    """A mapping without write-back fields: the benchmark stores have an empty ledger.
    (Here, not in a script, so a worker process can unpickle it.)"""

    def writes(self, entity: Any) -> Mapping[str, Any]:
        return {}

    def entity(self, entity: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:  # the same in every process: it is part of the config hash
        return "NoWrites()"


class Tally:
    """A ``consume`` for :func:`sync.scale.evaluate_at_scale` that counts what a cycle
    would plan and queue: findings per kind, records with desired values, customers with
    a next threshold. Pickles, so each worker process counts its own part."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}
        self.desired = 0
        self.thresholds = 0

    def __call__(self, batch: Any) -> None:
        evaluation = batch.evaluation
        kinds = self.kinds
        for finding in evaluation.findings:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
        self.desired += len(evaluation.desired)
        self.thresholds += len(evaluation.next_thresholds)

    def add(self, other: Tally) -> None:
        for kind, count in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count
        self.desired += other.desired
        self.thresholds += other.thresholds
