"""Secret values: resolved from env references or files, held as ``SecretStr``, registered
so the log redactor can blank them wherever they appear."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo

_lock = threading.Lock()
_registered: set[str] = set()
_version = 0

# Shorter values would blank ordinary words in log lines; nothing real is that short.
MIN_SECRET_LENGTH = 4


def register_secret(value: str) -> None:
    """Remember ``value`` so log output never shows it."""
    global _version
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _registered:
            _registered.add(value)
            _version += 1


def registered_secrets() -> tuple[int, frozenset[str]]:
    """``(version, values)``; the version changes whenever a value is added."""
    with _lock:
        return _version, frozenset(_registered)


def base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def resolve_path(value: str, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir(info) / path


def _to_secret(value: Any, info: ValidationInfo) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, dict):
        if set(value) != {"file"} or not isinstance(value["file"], str):
            raise ValueError("a secret is a string, '${ENV_VAR}' or {file: /path/to/secret}")
        path = resolve_path(value["file"], info)
        if not path.is_file():
            raise ValueError(f"secret file {value['file']} does not exist")
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"secret file {value['file']} cannot be read: {exc.strerror}"
            ) from None
        if not text:
            raise ValueError(f"secret file {value['file']} is empty")
        register_secret(text)
        return SecretStr(text)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("secret is empty")
        register_secret(value)
        return SecretStr(value)
    raise ValueError(
        f"a secret is a string, '${{ENV_VAR}}' or {{file: /path}} (got {type(value).__name__})"
    )


def _to_existing_file(value: Any, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError(f"expected a file path (got {type(value).__name__})")
    path = resolve_path(str(value), info)
    if not path.is_file():
        raise ValueError(f"file {value} does not exist")
    return path


Secret = Annotated[SecretStr, BeforeValidator(_to_secret)]
"""A secret: inline string, ``${ENV_VAR}`` (expanded earlier) or ``{file: path}``."""

ExistingFile = Annotated[Path, BeforeValidator(_to_existing_file)]
"""A path, relative to the config file's folder, that must name an existing file."""
