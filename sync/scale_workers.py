"""The scale path's second process: it loads and normalises a share of the accounts for
matching, finds the close-name candidates while the caller joins the exact evidence, then
evaluates its share of the customers from its own read connection to the store (their
links in a scratch SQLite file), into its own copy of ``consume``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from rules.features import RecordFeatures
from rules.fuzzy import fuzzy_candidates
from rules.matching import FuzzyFound, MatchSettings
from rules.model import Policy
from sync.cycle import Runtime
from sync.scale_stream import (
    Batch,
    Key,
    customers_of,
    evaluate_ranges,
    features_in,
    shares,
    write_links,
)
from sync.snapshot import fact_makers


def _store_path(store: Any) -> str:
    if store.dialect != "sqlite" or not store.engine.url.database:
        raise ValueError("workers read a SQLite store file")
    return str(store.engine.url.database)


class Workers:
    """Processes that evaluate parts of the link table; started at once (their imports
    overlap the caller's loading and matching), each told its part once links exist."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh, small process
        self.pipes: list[Any] = []
        self.processes: list[Any] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_work, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
        self.scratch = tempfile.mkdtemp(prefix="channelsync-scale-")

    def features(self, store: Any, connections: Sequence[str], settings: MatchSettings,
                 tell: Callable[[str], None]) -> tuple[RecordFeatures, FuzzyFound]:
        """The accounts' matching features, normalised in equal shares of their keys,
        the first share here, the others in the workers at the same time; and the close-name
        candidates, which the first worker then finds while this process matches the rest."""
        path = _store_path(store)
        marks = ",".join("?" * len(connections))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            count = conn.execute(f"SELECT count(*) FROM account WHERE connection IN ({marks})",
                                 connections).fetchone()[0]
            cuts: list[Key | None] = []
            for part in range(1, len(self.pipes) + 1):
                found = conn.execute(
                    "SELECT connection, external_id FROM account"
                    f" WHERE connection IN ({marks}) ORDER BY connection, external_id"
                    " LIMIT 1 OFFSET ?", (*connections, count * part // (len(self.pipes) + 1))
                ).fetchone()
                cuts.append(tuple(found) if found else None)
            bounds = list(zip([None, *cuts], [*cuts, None], strict=True))
            for n, (pipe, (start, end)) in enumerate(zip(self.pipes, bounds[1:], strict=True)):
                pipe.send(("features", path, list(connections), start, end, settings, n == 0))
            parts = [features_in(conn, connections, *bounds[0])]
        finally:
            conn.close()
        tell("loaded_accounts")
        for pipe in self.pipes[1:]:
            parts.append(self._answer(pipe))
        # the first worker needs every other share's names, in key order around its own
        before, after = parts[:1], parts[1:]
        self.pipes[0].send(("names", *(
            [name for part in side for name in getattr(part, field)]
            for side in (before, after) for field in ("name", "compact", "country"))))
        parts.insert(1, self._answer(self.pipes[0]))
        first = self.pipes[0]
        return RecordFeatures.joined(parts), lambda: self._answer(first)

    @staticmethod
    def _answer(pipe: Any) -> Any:
        try:
            return pipe.recv()
        except EOFError:
            raise RuntimeError("a scale worker process died") from None

    def evaluate(
        self, store: Any, runtimes: Sequence[Runtime], links: dict[tuple[str, str], str], *,
        policy: Policy, now: datetime, consume: Callable[[Batch], None], batch: int,
        tell: Callable[[str], None], written: bool = False,
    ) -> tuple[list[Any], list[tuple[float, float, float]]]:
        path = _store_path(store)
        # no connector crosses a process boundary: facts need the rest
        light = [replace(rt, connector=cast(Any, None)) for rt in runtimes]
        # this process's share is smaller: it writes its own link table after the
        # workers', while they already evaluate (about a tenth of the time a share takes)
        parts = shares(customers_of(links, release=True), len(self.pipes) + 1, first=0.9)
        # the workers' shares first, each in its own file (no reader blocks a writer),
        # so they start while this process writes its own
        for part in range(len(parts) - 1, 0, -1):
            scratch = os.path.join(self.scratch, f"links-{part}.db")
            conn = sqlite3.connect(scratch, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = OFF")
                conn.execute("PRAGMA synchronous = OFF")
                ranges = write_links(conn, parts[part], schema="main", batch=batch)
            finally:
                conn.close()
            parts[part] = []
            self.pipes[part - 1].send(("rules", path, scratch, ranges, light, policy, now,
                                       consume, written))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            ranges = write_links(conn, parts[0], batch=batch)
            del parts
            tell("links_written")
            makers = fact_makers({rt.name: rt for rt in runtimes}, {})
            evaluate_ranges(conn, "temp", ranges, makers, policy, now, consume,
                            written=written)
        finally:
            conn.close()
        consumers, usage = [consume], []
        for pipe in self.pipes:
            ended, *used = self._answer(pipe)
            consumers.append(ended)
            usage.append(tuple(used))
        return consumers, usage

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _work(pipe: Any) -> None:
    """A worker process: normalise the accounts it is told (optional), then evaluate the
    part of the customers it is told; send back the features, then its consumer and usage."""
    gc.disable()  # as in the caller: acyclic objects by the million
    try:
        job = pipe.recv()
        if job[0] == "features":
            _, path, connections, start, end, settings, finds_names = job
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                mine = features_in(conn, connections, start, end)
            finally:
                conn.close()
            if finds_names:  # the close-name candidates over every share
                # (the others' names first: both ends sending at once would block)
                _, names, compacts, countries, names_after, compacts_after, countries_after = (
                    pipe.recv())
                pipe.send(mine)
                pipe.send(fuzzy_candidates(
                    [*names, *mine.name, *names_after],
                    [*compacts, *mine.compact, *compacts_after],
                    [*countries, *mine.country, *countries_after],
                    review_floor=settings.fuzzy_review,
                    min_typo_length=settings.min_typo_length, max_block=settings.max_block))
            else:
                pipe.send(mine)
            del mine
            job = pipe.recv()
    except EOFError:
        return  # the caller stopped before it had a part for us
    _, path, scratch, ranges, runtimes, policy, now, consume, written = job
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS scale", (scratch,))
        makers = fact_makers({rt.name: rt for rt in runtimes}, {})
        evaluate_ranges(conn, "scale", ranges, makers, policy, now, consume, written=written)
    finally:
        conn.close()
    closing = getattr(consume, "close", None)
    if closing is not None:
        closing()  # a store it opened in this process
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send((consume, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
               time.perf_counter() - started))
    pipe.close()
