"""Full matching and rules over the whole store, without holding every row (the engine
of :func:`sync.evaluate.evaluate_store`).

The lean path: matching reads only the columns it needs; its links go to a link table
and the records stream back joined to it in customer order, each customer's records
made facts, evaluated and handed on a batch at a time with what we wrote to them
(:mod:`sync.scale_stream`). On PostgreSQL each batch is read through the store's own
queries instead.

With ``workers=2`` the second core helps: a second process, started before matching (so
its imports cost nothing), loads and normalises half of the accounts for matching, then
evaluates the second half of the customers (their links in a scratch SQLite file) from
its own read connection to the store while this one evaluates the first. ``consume``
then runs in both processes and must pickle; each process's copy comes back as it ended
(``ScaleRun.consumers``); see :mod:`sync.scale_workers`.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.engine import Evaluation
from rules.features import KEYS_VERSION, made_keys
from rules.matching import Decision, FuzzyFound, MatchResult, MatchSettings, match_features
from rules.model import Policy
from sync.cycle import Runtime
from sync.scale_stream import (
    Batch,
    Group,
    account_features,
    customers_of,
    evaluate_by_keys,
    evaluate_ranges,
    shares,
    stream_part,
    write_links,
)
from sync.scale_workers import Workers
from sync.snapshot import fact_makers

__all__ = ["Batch", "Group", "ScaleRun", "account_features", "customers_of",
           "evaluate_at_scale", "shares", "stream_part", "write_links"]


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
    decisions: Sequence[Decision] = (), progress: Callable[[str], None] | None = None,
    consume: Callable[[Batch], None] | None = None, batch: int = 4000, workers: int = 1,
    on_match: Callable[[MatchResult], None] | None = None, written: bool = False,
    save_keys: bool = False,
) -> ScaleRun:
    """Match every account, then evaluate every matched customer, streaming.

    Without ``consume`` everything is kept and returned (small stores, tests). With it,
    each ``batch`` of customers is evaluated into a fresh :class:`Batch` handed to
    ``consume`` (which plans and writes, or counts) and dropped, and the match result is
    not kept (``on_match`` sees it first): memory stays flat whatever the store holds.
    ``written``: read what we wrote to each batch's records (a store with a ledger).
    ``save_keys``: store the matching keys of the accounts normalised because theirs were
    not current (a recording run; a dry run writes nothing).
    ``workers`` > 1 needs ``consume`` and a SQLite file (see the module docstring); a
    store on another database is read through its own queries, a batch at a time."""
    if workers > 1 and consume is None:
        raise ValueError("workers evaluate into consume: pass one")
    tell = progress or (lambda _stage: None)
    reader = prefetch(store)
    collecting = gc.isenabled()
    gc.disable()  # millions of acyclic objects: generation scans would cost a third
    pool = Workers(workers - 1) if workers > 1 else None
    try:
        return _evaluate_at_scale(store, runtimes, policy=policy, settings=settings, now=now,
                                  previous=previous, decisions=decisions, tell=tell,
                                  consume=consume, batch=batch, pool=pool, on_match=on_match,
                                  written=written, save_keys=save_keys)
    finally:
        if reader is not None:  # done by now, unless the evaluation stopped early
            reader.kill()
            reader.wait()
        if pool is not None:
            pool.close()
        # what was made with collection off goes to the oldest generation untraversed
        # (a collection here took over a second at a million accounts): most of it is
        # freed by reference count as the caller drops it, a later full collection finds
        # any cycle
        gc.freeze()
        gc.unfreeze()
        if collecting:
            gc.enable()


def prefetch(store: Any, available: int | None = None) -> subprocess.Popen[bytes] | None:
    """Read a SQLite store file once, from a child process, while matching runs, so that it
    is in the kernel's page cache when the rules join every record by index, at random
    places in the file: each page not yet in memory would be a disk read on the way (a
    cold store of a million accounts with their payloads took 58 s instead of 46 s). As
    ``pg_prewarm`` does; a hint (``posix_fadvise``) does nothing on some kernels, so the
    file is read, in 4 MB blocks. Only a file that fits in half the memory ``available``
    (bytes; by default what Linux says is available).

    Another process, never this one: SQLite's locks on the file are POSIX record locks,
    which belong to the process, and closing any descriptor of the file drops them all.
    Without them another process's connection, closing, takes the store for unused and
    checkpoints and deletes the write-ahead log under this one's open connections (a
    recording evaluation with workers then read a "malformed" database)."""
    path = store.engine.url.database if store.dialect == "sqlite" else None
    if not path or path == ":memory:":
        return None
    try:
        size = os.path.getsize(path)
        if available is None:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                available = next(int(line.split()[1]) * 1024 for line in meminfo
                                 if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    if size > available // 2:
        return None
    try:
        return subprocess.Popen([sys.executable, "-I", "-c", _READ_THROUGH, path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None  # only a hint


_READ_THROUGH = """
import sys
block = bytearray(4 << 20)
with open(sys.argv[1], "rb", buffering=0) as file:
    while file.readinto(block):
        pass
"""


def _evaluate_at_scale(
    store: Any, runtimes: Sequence[Runtime], *, policy: Policy, settings: MatchSettings,
    now: datetime, previous: Mapping[Any, str] | None, decisions: Sequence[Decision],
    tell: Callable[[str], None], consume: Callable[[Batch], None] | None, batch: int,
    pool: Workers | None, on_match: Callable[[MatchResult], None] | None, written: bool,
    save_keys: bool,
) -> ScaleRun:
    connections = [rt.name for rt in runtimes]
    match: MatchResult | None
    fuzzy: FuzzyFound | None = None
    if pool is None:
        features = account_features(store, connections)
        tell("loaded_accounts")
    else:  # each process loads its share of the accounts, normalising what changed
        features, fuzzy = pool.features(store, connections, settings, tell)
    match = match_features(features, previous=previous or {}, settings=settings,
                           fuzzy=fuzzy, decisions=decisions)
    if save_keys and features.made[0]:
        store.save_match_keys(made_keys(features), KEYS_VERSION)
    del features
    if on_match is not None:
        on_match(match)
    links = {key: link.customer_id for key, link in match.links.items()}
    run = ScaleRun(accounts=len(links), customers=len(set(links.values())),
                   review_items=len(match.review), match=match, evaluation=None)
    if consume is not None:
        run.match = match = None
    tell("matched")
    if pool is not None:
        assert consume is not None  # checked by evaluate_at_scale
        run.consumers, run.worker_usage = pool.evaluate(
            store, runtimes, links, policy=policy, now=now, consume=consume, batch=batch,
            tell=tell, written=written)
    elif store.dialect != "sqlite":
        customers = customers_of(links, release=consume is not None)
        run.evaluation = evaluate_by_keys(store, runtimes, customers, policy, now, consume,
                                          batch, written=written)
    else:
        run.evaluation = _evaluate_sqlite(store, runtimes, links, policy, now, consume, batch,
                                          written)
    tell("evaluated")
    return run


def _evaluate_sqlite(
    store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str],
    policy: Policy, now: datetime, consume: Callable[[Batch], None] | None, batch: int,
    written: bool,
) -> Evaluation | None:
    makers = fact_makers({rt.name: rt for rt in runtimes}, {})
    conn = store.engine.raw_connection()
    try:
        ranges = write_links(conn, customers_of(links, release=consume is not None),
                             batch=batch if consume is not None else None)
        return evaluate_ranges(conn, "temp", ranges, makers, policy, now, consume,
                               written=written)
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.scale_link")
        conn.close()
