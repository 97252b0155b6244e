"""Incremental matching gives what a full re-match gives, touching only the neighbourhood."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from rules.match_index import MatchIndex
from rules.matching import AccountRecord, Decision, Link, match_accounts
from sandbox.scenario import generate

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _records(seed: int, customers: int) -> list[AccountRecord]:
    world = generate(seed=seed, customers=customers, now=NOW)
    return [AccountRecord(crm.connection, a.key, a.name, a.website, a.country, a.duns, a.vat_id)
            for crm in world.crms for a in crm.accounts]


def _partition(links: dict[tuple[str, str], Link]) -> list[tuple[tuple[str, str], ...]]:
    groups: dict[str, set[tuple[str, str]]] = {}
    for key, link in links.items():
        groups.setdefault(link.customer_id, set()).add(key)
    return sorted(tuple(sorted(g)) for g in groups.values())


def test_updates_agree_with_a_full_rematch_and_leave_other_ids_alone() -> None:
    records = _records(2, 1500)
    index = MatchIndex()
    index.rebuild(records)
    current = {r.key: r for r in records}
    rng = random.Random(3)
    for round_no in range(4):
        keys = sorted(current)
        changed = [dataclasses.replace(current[k], name=current[rng.choice(keys)].name,
                                       domain=rng.choice([current[k].domain, None]))
                   for k in rng.sample(keys, 20)]
        changed_keys = {c.key for c in changed}
        removed = [k for k in rng.sample(keys, 8) if k not in changed_keys]
        for n in range(6):
            twin = current[rng.choice(keys)]
            changed.append(AccountRecord("pd-new", f"{round_no}-{n}", (twin.name or "").upper(),
                                         twin.domain, twin.country))
        current.update({c.key: c for c in changed})
        for key in removed:
            del current[key]
        before = dict(index.links)
        area = index.update(changed, removed).links
        previous = {(k[0], "account", k[1]): link.customer_id for k, link in before.items()}
        full = match_accounts(list(current.values()), previous=previous)
        assert index.links == dict(full.links)
        assert _partition(index.links) == _partition(dict(full.links))
        assert len(area) < len(current) / 4
        for key, link in index.links.items():
            if key not in area:
                assert before[key] == link


def test_a_decision_reaches_the_index() -> None:
    a = AccountRecord("sf", "1", "Acme GmbH", "acme.de", "DE", "123456789")
    b = AccountRecord("hs", "2", "ACME", "www.acme.de", "DE")
    c = AccountRecord("pd", "3", "Zeta Pumps AG", None, "CH")
    index = MatchIndex()
    index.rebuild([a, b, c])
    assert index.links[a.key].customer_id == index.links[b.key].customer_id
    index.update(decisions=[Decision(a.key, b.key, "never"), Decision(b.key, c.key, "same")])
    assert index.links[a.key].customer_id != index.links[b.key].customer_id
    assert index.links[b.key].customer_id == index.links[c.key].customer_id
    index.update(removed=[c.key])
    assert c.key not in index.links and b.key in index.links
