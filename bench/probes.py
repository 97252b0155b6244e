"""What a benchmark's wall time went to besides its own thread's CPU: every thread's CPU by
function (sampled), the machine's waits (steal, iowait, pressure stalls), slow store calls."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event as sa_event


class ThreadSampler:
    """The whole process's CPU by function: cProfile sees only the thread that enables it,
    and the sandboxes serve requests from their own threads. Every ``period`` seconds it
    reads each thread's CPU clock and stack; the CPU a thread used since the last look is
    charged to the functions on its stack then (statistical: accurate over many samples)."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.inclusive: dict[tuple[str, str], float] = {}
        self.leaf: dict[tuple[str, str], float] = {}
        self.per_thread: dict[str, float] = {}
        self.total = self.own = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._clocks: dict[int, float] = {}  # thread -> CPU seconds when last looked at
        self._started = 0.0

    def __enter__(self) -> ThreadSampler:
        # threads already running are charged from here; a thread first seen later started
        # inside the window and is charged all its CPU
        for ident in sys._current_frames():
            with contextlib.suppress(OSError, OverflowError):
                self._clocks[ident] = time.clock_gettime(time.pthread_getcpuclockid(ident))
        self._started = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.total = time.process_time() - self._started

    def _run(self) -> None:
        last = self._clocks
        me = threading.get_ident()
        while not self._done.wait(self.period):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except (OSError, OverflowError):  # the thread just ended
                    continue
                used, last[ident] = cpu - last.get(ident, 0.0), cpu
                if used <= 0:
                    continue
                group = _thread_group(names.get(ident, "?"))
                _add(self.per_thread, group, used)
                _add(self.leaf, (group, _where(frame)), used)
                seen: set[str] = set()
                walk: Any = frame
                while walk is not None:
                    seen.add(_where(walk))
                    walk = walk.f_back
                for where in seen:
                    _add(self.inclusive, (group, where), used)
        self.own = time.thread_time()

    def report(self, top: int = 30) -> None:
        seen = sum(self.per_thread.values())
        print("   CPU by thread: " + ", ".join(
            f"{g} {s:.3f}s" for g, s in sorted(self.per_thread.items(), key=lambda i: -i[1]))
            + f"; the sampler {self.own:.3f}s; not seen {self.total - seen - self.own:.3f}s"
            " (threads that ended between two looks: mostly the sandboxes' request threads)")
        for title, counter in (("inclusive", self.inclusive), ("where it was", self.leaf)):
            print(f"   whole process, sampled, {title}:")
            for (group, where), seconds in sorted(counter.items(), key=lambda i: -i[1])[:top]:
                print(f"   {seconds:8.3f}s  {group:<8} {where}")


def _add(counter: dict[Any, float], key: Any, seconds: float) -> None:
    counter[key] = counter.get(key, 0.0) + seconds


def _thread_group(name: str) -> str:
    if name == "MainThread":
        return "cycle"
    return "sandbox" if "process_request" in name or name.startswith("sandbox") else name


def _where(frame: Any) -> str:
    code = frame.f_code
    path = code.co_filename.rsplit("site-packages/", 1)[-1].replace(str(Path.cwd()) + "/", "")
    return f"{path}:{code.co_firstlineno}({code.co_name})"


def machine_counters() -> dict[str, float]:
    """Seconds the whole machine spent waiting, cumulative (Linux; empty elsewhere): CPU
    time the hypervisor gave to other guests (steal), idle with disk I/O outstanding
    (iowait), and the stall times under /proc/pressure (some task waiting for CPU or I/O)."""
    counters: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        tick = os.sysconf("SC_CLK_TCK")  # /proc/stat counts in these
        counters["iowait"] = int(fields[5]) / tick
        counters["steal"] = int(fields[8]) / tick
    for resource in ("cpu", "io"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            some = Path(f"/proc/pressure/{resource}").read_text().split("\n", 1)[0]
            counters[f"{resource} stall"] = int(some.rsplit("total=", 1)[1]) / 1e6
    return counters


class SlowStatements:
    """Store statements and commits that took at least ``threshold`` seconds (wall)."""

    def __init__(self, engine: Any, threshold: float) -> None:
        self.threshold = threshold
        self.seen: list[tuple[float, str]] = []
        self.active = False
        self._started: dict[int, float] = {}
        sa_event.listen(engine, "before_cursor_execute", self._before)
        sa_event.listen(engine, "after_cursor_execute", self._after)
        commit = engine.dialect.do_commit

        def timed_commit(dbapi_connection: Any) -> None:
            began = time.perf_counter()
            try:
                commit(dbapi_connection)
            finally:
                self._note(time.perf_counter() - began, "COMMIT")

        engine.dialect.do_commit = timed_commit

    def _before(self, conn: Any, *_args: Any) -> None:
        self._started[id(conn)] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        began = self._started.pop(id(conn), None)
        if began is not None:
            self._note(time.perf_counter() - began, " ".join(statement.split())[:100])

    def _note(self, took: float, what: str) -> None:
        if self.active and took >= self.threshold:
            self.seen.append((took, what))

    def report(self) -> None:
        for took, what in self.seen:
            print(f"   slow store call {took * 1000:7.1f} ms: {what}")
        self.seen.clear()


def quiet_logging() -> None:
    """Warnings and errors only, from the standard library's loggers and structlog's: a
    benchmark prints its own figures."""
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
