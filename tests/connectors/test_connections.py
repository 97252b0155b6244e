"""Several connections of one vendor at once (two distributors on HubSpot, say), and the
budget share each connection gets from ``wiring.py``.

Two sandboxes of the same vendor stand for two CRM accounts; their connectors are driven
page by page in turn, so any state they wrongly shared (cursors, field-key caches, quota
governors, tokens) would show up as records, values or budgets crossing over.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.base import Connector, Cursor, Entity, Page, Record, RecordUpdate
from connectors.errors import AuthError
from tests.connectors.harness import Harness

VENDORS = ("salesforce", "hubspot", "pipedrive", "dynamics")
ENTITY = Entity.OPPORTUNITY


@pytest.fixture(params=VENDORS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Harness, Harness]]:
    module = importlib.import_module(f"tests.connectors.harness_{request.param}")
    first: Harness = module.make_harness()
    try:
        second: Harness = module.make_harness()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def interleave(
    reads: Sequence[tuple[Connector, Cursor | None, Sequence[str]]],
) -> list[list[Page]]:
    """Pull every read to its end, one page of each in turn."""
    streams = [c.read(ENTITY, cursor, list(fields)) for c, cursor, fields in reads]
    pages: list[list[Page]] = [[] for _ in streams]
    live = set(range(len(streams)))
    while live:
        for n in sorted(live):
            page = next(streams[n], None)
            if page is None:
                live.discard(n)
            else:
                pages[n].append(page)
    return pages


def latest(pages: Sequence[Page]) -> dict[str, Record]:
    return {r.id: r for p in pages for r in p.records}


def test_two_connections_of_one_vendor_keep_their_own_state(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    size = a.min_page_size()
    made = {"a": a.create(ENTITY, 2 * size + 1), "b": b.create(ENTITY, 3 * size + 2)}
    quotas = {"a": a.quota(share=0.5, limit=1_000_000), "b": b.quota(share=0.25, limit=2_000_000)}
    conns = {"a": a.connector(page_size=size, quota=quotas["a"]),
             "b": b.connector(page_size=size, quota=quotas["b"])}
    field = a.writable_field(ENTITY)
    assert field == b.writable_field(ENTITY)

    full_a, full_b = interleave([(conns["a"], None, a.fields(ENTITY)),
                                 (conns["b"], None, b.fields(ENTITY))])
    assert set(latest(full_a)) == set(made["a"]) and set(latest(full_b)) == set(made["b"])
    assert full_a[-1].complete and full_b[-1].complete

    # writes in turn: each connector resolves the field with its own account's metadata
    read_back = {"a": latest(full_a), "b": latest(full_b)}
    step = max(1, size // 2)
    for start in range(0, max(len(made["a"]), len(made["b"])), step):
        for name in ("a", "b"):
            chunk = [RecordUpdate(id=i, fields={field: f"{name}-{made[name].index(i)}"},
                                  etag=read_back[name][i].etag)
                     for i in made[name][start:start + step]]
            if chunk:
                results = conns[name].write(ENTITY, chunk)
                assert [r.ok for r in results] == [True] * len(chunk), results
    for name, h in (("a", a), ("b", b)):
        assert [h.stored_value(ENTITY, i, field) for i in made[name]] == [
            f"{name}-{n}" for n in range(len(made[name]))]

    # the tokens of account a expire: b's connection does not notice, a's renews or says so
    a.app.faults.expire_tokens()
    extra_b = b.create(ENTITY, 1)
    outcome: dict[str, Any] = {}
    try:
        again_a, again_b = interleave([
            (conns["a"], full_a[-1].cursor, a.fields(ENTITY)),
            (conns["b"], full_b[-1].cursor, b.fields(ENTITY))])
        outcome = {"a": latest(again_a), "b": latest(again_b)}
    except AuthError as exc:  # a fixed token cannot be renewed: a's connection fails alone
        assert str(exc)
        outcome["b"] = latest(interleave([(conns["b"], full_b[-1].cursor,
                                           b.fields(ENTITY))])[0])
    # each incremental read brings its own account's changes, with its own values
    assert set(extra_b) <= set(outcome["b"])
    assert set(outcome["b"]) <= set(made["b"]) | set(extra_b)
    for record_id, record in outcome["b"].items():
        if record_id in made["b"]:
            assert record.fields[field] == f"b-{made['b'].index(record_id)}"
    if "a" in outcome:
        assert set(outcome["a"]) <= set(made["a"])
        for record_id, record in outcome["a"].items():
            assert record.fields[field] == f"a-{made['a'].index(record_id)}"

    # each governor counts against its own vendor account and its own share
    budget_a, budget_b = conns["a"].budget(), conns["b"].budget()
    assert (budget_a.limit, budget_b.limit) == (1_000_000, 2_000_000)
    assert (budget_a.share_limit, budget_b.share_limit) == (500_000, 500_000)
    assert quotas["a"].spent_here > 0 and quotas["b"].spent_here > 0
    assert quotas["a"].spent_here != quotas["b"].spent_here  # b read more pages than a


# -- wiring: every vendor's connector gets the configured share ------------------------------

def _conn(vendor: str, share: float) -> SimpleNamespace:
    secret = SimpleNamespace(get_secret_value=lambda: "not-a-real-secret")
    auth = {
        "salesforce": SimpleNamespace(flow="session", session_token=secret,
                                      instance_url="https://acme.my.salesforce.com"),
        "hubspot": SimpleNamespace(token=secret),
        "pipedrive": SimpleNamespace(api_token=secret),
        "dynamics": SimpleNamespace(certificate_file=None, client_secret=secret, client_id="app",
                                    authority="https://login.example/tenant", thumbprint=None),
    }[vendor]
    return SimpleNamespace(
        vendor=vendor, name=f"{vendor}-east", auth=auth, budget_share=share, ca_bundle=None,
        base_url="https://org.crm.dynamics.com" if vendor == "dynamics" else None,
        api_version="66.0")


# (vendor, unit, window, limit before the vendor reports one)
WIRED = [("salesforce", "requests", "day", None), ("hubspot", "requests", "day", None),
         ("pipedrive", "tokens", "day", None), ("dynamics", "requests", "5min", 6000)]


@pytest.mark.parametrize(("vendor", "unit", "window", "limit"), WIRED)
def test_wiring_gives_each_connection_its_configured_share(
    vendor: str, unit: str, window: str, limit: int | None,
) -> None:
    from wiring import build_connector

    connectors = [build_connector(_conn(vendor, share), sleep=lambda _s: None)
                  for share in (0.3, 0.6)]
    try:
        budgets = [c.budget() for c in connectors]
        assert [(b.unit, b.window, b.limit) for b in budgets] == [(unit, window, limit)] * 2
        governors = [getattr(c, attr) for c in connectors
                     for attr in ("quota", "_quota") if hasattr(c, attr)]
        assert [g.share for g in governors] == [0.3, 0.6]
        assert governors[0] is not governors[1]
        if vendor == "dynamics":
            assert [b.share_limit for b in budgets] == [1800, 3600]
        if vendor == "hubspot":  # the 10-second burst window is shared out the same way
            assert [c.api._burst_share for c in connectors] == [0.3, 0.6]  # type: ignore[attr-defined]  # HubSpot only
    finally:
        for c in connectors:
            c.close()
