"""Named crash points for the crash-safety test: a hard kill exactly where it is asked for.

``checkpoint(name)`` does nothing unless ``CHANNELSYNC_CRASH_AT`` is ``name`` (crash the
first time) or ``name#N`` (crash the N-th time this process reaches it). Then the process
ends at once with ``os._exit(137)``, the exit status of a SIGKILL: no ``finally``, no
commit, no flush, as when the machine or the OOM killer stops it.

With ``CHANNELSYNC_CHECKPOINT_LOG`` set to a file path, every checkpoint reached is
appended to that file (one name a line), so a test can list the points a cycle passes.
"""

from __future__ import annotations

import os
from collections import Counter

CRASH_ENV = "CHANNELSYNC_CRASH_AT"
LOG_ENV = "CHANNELSYNC_CHECKPOINT_LOG"
CRASH_EXIT_STATUS = 137
CRASH_MARKER = "channelsync: crash checkpoint"

_reached: Counter[str] = Counter()


def parse_target(text: str) -> tuple[str, int]:
    """``"pull.page_stored#3"`` -> ``("pull.page_stored", 3)``; no ``#N`` means the first."""
    name, _, nth = text.strip().partition("#")
    if not name or (nth and (not nth.isdigit() or int(nth) < 1)):
        raise ValueError(f"{CRASH_ENV}={text!r}: expected NAME or NAME#N with N >= 1")
    return name, int(nth) if nth else 1


def checkpoint(name: str) -> None:
    """Crash here if the environment asks for this point (see the module docstring)."""
    trail = os.environ.get(LOG_ENV)
    if trail:
        with open(trail, "a", encoding="utf-8") as out:
            out.write(name + "\n")
    target = os.environ.get(CRASH_ENV)
    if not target:
        return
    wanted, nth = parse_target(target)
    if wanted != name:
        return
    _reached[name] += 1
    if _reached[name] == nth:
        # one unbuffered line so the test can tell this crash from any other death
        os.write(2, f"{CRASH_MARKER} {name}#{nth}\n".encode())
        os._exit(CRASH_EXIT_STATUS)
