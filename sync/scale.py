"""Full matching and rules over a very large SQLite store, without holding every row.

The lean path: matching reads only the columns it needs; its links go to a link table
and the records stream back joined to it in customer order, each customer's records
made facts, evaluated and dropped (:mod:`sync.scale_stream`). Only the rules' results
stay in memory.

With ``workers=2`` the second core helps: a second process, started before matching (so
its imports cost nothing), loads and normalises half of the accounts for matching, then
evaluates the second half of the customers (their links in a scratch SQLite file) from
its own read connection to the store while this one evaluates the first. ``consume``
then runs in both processes and must pickle; each process's copy comes back as it ended
(``ScaleRun.consumers``); see :mod:`sync.scale_workers`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.engine import Evaluation
from rules.matching import MatchResult, MatchSettings, match_accounts, match_features
from rules.model import Policy
from sync.cycle import Runtime
from sync.scale_stream import (
    Group,
    account_records,
    customers_of,
    evaluate_groups_into,
    shares,
    stream_groups,
    stream_part,
    write_links,
)
from sync.scale_workers import Workers

__all__ = ["Group", "ScaleRun", "account_records", "customers_of", "evaluate_at_scale",
           "evaluate_groups_into", "shares", "stream_groups", "stream_part", "write_links"]


@dataclass(slots=True)
class ScaleRun:
    """What :func:`evaluate_at_scale` did; ``match`` and ``evaluation`` only when kept.
    ``consumers``: with workers, each part's ``consume`` as it ended in its process."""

    accounts: int
    customers: int
    review_items: int
    match: MatchResult | None
    evaluation: Evaluation | None
    consumers: list[Any] = field(default_factory=list)
    # per worker process: CPU seconds, peak RSS in MB (this process's are the caller's),
    # and the wall seconds its share of the rules took
    worker_usage: list[tuple[float, float, float]] = field(default_factory=list)


def evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None = None,
    progress: Callable[[str], None] | None = None,
    consume: Callable[[Evaluation], None] | None = None, batch: int = 4000,
    workers: int = 1,
) -> ScaleRun:
    """Match every account, then evaluate every matched customer, streaming.

    Without ``consume`` everything is kept and returned (small stores, tests). With it,
    each ``batch`` of customers is evaluated into a fresh :class:`Evaluation` handed to
    ``consume`` (which plans and writes, or counts) and dropped, and the match result is
    not kept: memory stays flat whatever the store holds. ``workers`` > 1 needs
    ``consume`` (see the module docstring)."""
    if workers > 1 and consume is None:
        raise ValueError("workers evaluate into consume: pass one")
    tell = progress or (lambda _stage: None)
    collecting = gc.isenabled()
    gc.disable()  # millions of acyclic objects: generation scans would cost a third
    pool = Workers(workers - 1) if workers > 1 else None
    try:
        return _evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now,
                                  previous=previous, tell=tell, consume=consume, batch=batch,
                                  pool=pool)
    finally:
        if pool is not None:
            pool.close()
        if collecting:
            gc.enable()
        gc.collect()


def _evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None, tell: Callable[[str], None],
    consume: Callable[[Evaluation], None] | None, batch: int, pool: Workers | None,
) -> ScaleRun:
    connections = [rt.name for rt in runtimes]
    match: MatchResult | None
    if pool is None:
        records = account_records(store, connections)
        tell("loaded_accounts")
        match = match_accounts(records, previous=previous or {}, settings=settings)
        del records
    else:  # each process loads and normalises its share of the accounts
        features, fuzzy = pool.features(store, connections, settings, tell)
        match = match_features(features, previous=previous or {}, settings=settings,
                               fuzzy=fuzzy)
        del features
    assert match is not None
    links = {key: link.customer_id for key, link in match.links.items()}
    run = ScaleRun(accounts=len(links), customers=len(set(links.values())),
                   review_items=len(match.review), match=match, evaluation=None)
    if consume is not None:
        run.match = match = None
    tell("matched")
    if pool is None:
        groups = stream_groups(store, runtimes, links, release=consume is not None)
        run.evaluation = evaluate_groups_into(groups, policy, now, consume, batch)
    else:
        assert consume is not None  # checked by evaluate_at_scale
        run.consumers, run.worker_usage = pool.evaluate(
            store, runtimes, links, policy=policy, now=now, consume=consume, batch=batch,
            tell=tell)
    tell("evaluated")
    return run
