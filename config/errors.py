"""Config problems with file, line and key path, gathered and raised together."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    """``('connections', 2, 'auth', 'token')`` -> ``connections[2].auth.token``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``; did you mean 'x'?`` suffix, or an empty string when nothing is close."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config or mapping file."""

    file: str
    line: int
    path: Path_
    message: str

    def __str__(self) -> str:
        if self.line <= 0:  # the file as a whole (missing, unreadable)
            return f"{self.file}: {self.message}"
        if not self.path:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}:{self.line} {format_path(self.path)}: {self.message}"


class ConfigError(Exception):
    """Every problem found while loading the configuration, in file and line order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(
            sorted(set(problems), key=lambda p: (p.file, p.line, format_path(p.path), p.message))
        )
        count = len(self.problems)
        header = f"{count} configuration problem{'s' if count != 1 else ''}"
        super().__init__(header + ":\n" + "\n".join(f"  {p}" for p in self.problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]
