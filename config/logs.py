"""Logging: structlog set up once, run/connection/entity context, and secret redaction.

JSON lines when stderr is not a terminal, readable console lines when it is. Every event
passes through ``redact_secrets`` last before rendering: values under sensitive keys,
``Bearer ...`` strings, JWT-shaped strings, ``token=...`` pairs and every secret value the
config loader resolved are replaced by ``[REDACTED]``, in nested values and exception text.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from config.secrets import registered_secrets

REDACTED = "[REDACTED]"
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "api_token",
        "x_api_token",
        "password",
        "secret",
        "client_secret",
        "consumer_secret",
        "authorization",
        "assertion",
        "private_key",
        "session_id",
        "session_token",
        "sessionid",
        "cookie",
        "set_cookie",
    }
)
_SENSITIVE_SUFFIXES = ("_token", "_secret", "_password", "_private_key")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PAIR = re.compile(
    r"(?i)\b((?:access_|refresh_|api_|session_)?token|password|client_secret|assertion|"
    r"session_?id|api_key|apikey|sig|signature)([\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}]+)"
)


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    folded = key.lower().replace("-", "_")
    return folded in SENSITIVE_KEYS or folded.endswith(_SENSITIVE_SUFFIXES)


class _SecretPattern:
    """An alternation of every registered secret, rebuilt only when the registry grows."""

    def __init__(self) -> None:
        self.version = -1
        self.pattern: re.Pattern[str] | None = None

    def current(self) -> re.Pattern[str] | None:
        version, values = registered_secrets()
        if version != self.version:
            ordered = sorted(values, key=len, reverse=True)
            self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self.version = version
        return self.pattern


_secrets = _SecretPattern()


def redact_text(text: str) -> str:
    """``text`` with secrets, bearer credentials, JWTs and ``key=value`` secrets blanked."""
    pattern = _secrets.current()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """Recursively redact strings, mappings, lists and tuples; other values pass through."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_sensitive_key(k) and v is not None else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: run after exception formatting, before the renderer."""
    return redact_value(event_dict)


def redaction_processors() -> list[Processor]:
    """Processors that turn an event into its redacted form (also for ``capture_logs``)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(
    level: str = "INFO", fmt: str = "auto", *, stream: TextIO | None = None
) -> None:
    """Set up structlog; ``fmt`` is ``auto`` (console on a terminal, else JSON), ``json``
    or ``console``. Safe to call again (tests, CLI re-entry)."""
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    # Exceptions reach the renderer as already-redacted text, hence plain_traceback.
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def configure_from_settings(settings: Any, *, stream: TextIO | None = None) -> None:
    """``configure_logging`` from a ``LoggingSettings`` (``settings.logging``)."""
    configure_logging(settings.level, settings.format, stream=stream)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial) if name else structlog.get_logger(**initial)


def bind_run(run_id: str | None = None) -> str:
    """Bind ``run_id`` (a new one if not given) into every following log line; returns it."""
    run_id = run_id or uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    return run_id


def unbind_run() -> None:
    structlog.contextvars.unbind_contextvars("run_id", "connection", "entity")


@contextmanager
def run_context(run_id: str | None = None) -> Iterator[str]:
    """``with run_context() as run_id:`` binds the run id for the block."""
    run_id = run_id or uuid.uuid4().hex[:12]
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        yield run_id


@contextmanager
def connection_context(connection: str, entity: str | None = None) -> Iterator[None]:
    """Bind ``connection`` (and ``entity``) for the block."""
    values: dict[str, Any] = {"connection": connection}
    if entity is not None:
        values["entity"] = str(entity)
    with structlog.contextvars.bound_contextvars(**values):
        yield


@contextmanager
def entity_context(entity: str) -> Iterator[None]:
    with structlog.contextvars.bound_contextvars(entity=str(entity)):
        yield
