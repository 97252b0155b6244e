"""``load_settings``: read ``channelsync.yaml`` once, report every problem at once, or return
frozen ``Settings``."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from config.connections import AUTH_KEYS, VENDORS
from config.errors import ConfigError, ConfigProblem, Path_, did_you_mean
from config.mapping import EMPTY_MAPPING, CompiledMapping
from config.mapping_compiler import compile_mapping, load_mapping_file
from config.models import Settings
from config.secrets import register_secret
from config.yamlsource import YamlDocument, expand_env, parse_yaml

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
_ADAPTER = TypeAdapter(Settings)


def load_settings(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    mappings_dir: Path | None = None,
) -> Settings:
    """Load and validate ``path``; raise ``ConfigError`` listing every problem found.

    ``environ`` (default ``os.environ``) resolves ``${VAR}`` references; ``mappings_dir``
    holds the per-vendor default mappings (default: ``config/mappings``).
    """
    display = os.fspath(path)
    try:
        text = Path(display).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(display, 0, (), "config file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(display, 0, (), f"cannot read: {exc}")]) from None
    doc = parse_yaml(text, display)
    if doc.problems:
        raise ConfigError(doc.problems)
    if not isinstance(doc.data, dict):
        doc.problem((), "the config must be a YAML mapping (store:, policy:, connections:, ...)")
        raise ConfigError(doc.problems)
    expand_env(doc, os.environ if environ is None else environ)
    base_dir = Path(display).resolve().parent
    data = dict(doc.data)
    extra_problems = _check_connections(doc, data, base_dir, mappings_dir or DEFAULT_MAPPINGS_DIR)
    _check_policy_references(doc, data)
    _check_territories(doc, data)
    settings: Settings | None = None
    try:
        settings = _ADAPTER.validate_python(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        reported = [p.path for p in doc.problems]
        errors = exc.errors(include_url=False)
        failed_under = {tuple(e["loc"][:1]) for e in errors if len(e["loc"]) > 1}
        for error in errors:
            # A list whose items failed is "too short" only because they were dropped.
            if error["type"] == "too_short" and tuple(error["loc"]) in failed_under:
                continue
            problem = _translate(doc, error)
            if not any(problem.path[: len(seen)] == seen for seen in reported):
                doc.problems.append(problem)
    problems = doc.problems + extra_problems
    if problems or settings is None:
        raise ConfigError(problems)
    password = urlsplit(settings.store.url).password
    if password:
        register_secret(password)
    return settings


def _check_connections(
    doc: YamlDocument, data: dict[str, Any], base_dir: Path, mappings_dir: Path
) -> list[ConfigProblem]:
    """Cross-entry checks pydantic cannot see, and each connection's mapping compiled in place.

    Returns problems found in mapping files (they carry their own file names).
    """
    raw = data.get("connections")
    if not isinstance(raw, list):
        return []
    file_problems: list[ConfigProblem] = []
    first_line: dict[str, int] = {}
    compiled_files: dict[tuple[Path, str], CompiledMapping | None] = {}
    connections: list[Any] = []
    for index, entry in enumerate(raw):
        at: Path_ = ("connections", index)
        if not isinstance(entry, dict):
            connections.append(entry)
            continue
        entry = dict(entry)
        name, role = entry.get("name"), entry.get("role")
        if isinstance(name, str):
            if name in first_line:
                doc.problem(
                    (*at, "name"),
                    f"duplicate connection name '{name}' (first at line {first_line[name]})",
                )
            else:
                first_line[name] = doc.line_of((*at, "name"))
        if role == "distributor" and not entry.get("distributor_id"):
            doc.problem((*at, "distributor_id"), "required for a distributor connection")
        if role == "internal" and entry.get("distributor_id") is not None:
            doc.problem(
                (*at, "distributor_id"), "only distributor connections have a distributor_id"
            )
        vendor = entry.get("vendor")
        if vendor in VENDORS:
            entry["mapping"] = _mapping_for(
                doc,
                entry.get("mapping"),
                (*at, "mapping"),
                vendor,
                base_dir,
                mappings_dir,
                compiled_files,
                file_problems,
            )
        connections.append(entry)
    data["connections"] = connections
    return file_problems


def _mapping_for(
    doc: YamlDocument,
    raw: Any,
    at: Path_,
    vendor: str,
    base_dir: Path,
    mappings_dir: Path,
    cache: dict[tuple[Path, str], CompiledMapping | None],
    file_problems: list[ConfigProblem],
) -> CompiledMapping:
    if isinstance(raw, dict):
        compiled = compile_mapping(doc, raw, at, vendor, source=f"{doc.file}:{doc.line_of(at)}")
        return compiled or EMPTY_MAPPING
    if raw is None:
        path = mappings_dir / f"{vendor}.yaml"
        display = str(path)
        if not path.is_file():
            doc.problem(at, f"no mapping given and no default mapping for {vendor} at {display}")
            return EMPTY_MAPPING
    elif isinstance(raw, str):
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else base_dir / path
        display = os.path.normpath(os.path.join(os.path.dirname(doc.file), raw))
        if not path.is_file():
            doc.problem(at, f"mapping file {raw} does not exist")
            return EMPTY_MAPPING
    else:
        doc.problem(at, "expected a mapping file path or an inline mapping")
        return EMPTY_MAPPING
    key = (path.resolve(), vendor)
    if key not in cache:
        compiled, mapping_doc = load_mapping_file(path, display, vendor)
        file_problems.extend(mapping_doc.problems)
        cache[key] = compiled
    return cache[key] or EMPTY_MAPPING


def _check_policy_references(doc: YamlDocument, data: dict[str, Any]) -> None:
    policy = data.get("policy")
    raw = data.get("connections")
    if not isinstance(policy, dict) or not isinstance(raw, list):
        return
    roles = {
        c.get("name"): c.get("role")
        for c in raw
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    }
    managers = policy.get("channel_manager")
    if isinstance(managers, dict):
        for name in managers:
            at = ("policy", "channel_manager", str(name))
            if name not in roles:
                doc.problem(
                    at, f"unknown connection '{name}'" + did_you_mean(str(name), map(str, roles))
                )
            elif roles[name] != "internal":
                doc.problem(
                    at,
                    f"'{name}' is a distributor connection; only internal ones have one",
                )
    tiers = policy.get("tiers")
    tier_names = [str(t) for t in tiers] if isinstance(tiers, dict) else []
    distributors = policy.get("distributors")
    if isinstance(distributors, dict):
        for distributor, body in distributors.items():
            tier = body.get("tier") if isinstance(body, dict) else None
            if tier is not None and tier not in tier_names:
                doc.problem(
                    ("policy", "distributors", str(distributor), "tier"),
                    f"unknown tier '{tier}'" + did_you_mean(str(tier), tier_names),
                )


def _check_territories(doc: YamlDocument, data: dict[str, Any]) -> None:
    scorecards = data.get("scorecards")
    territories = scorecards.get("territories") if isinstance(scorecards, dict) else None
    if not isinstance(territories, dict):
        return
    first: dict[str, str] = {}
    for name, countries in territories.items():
        if not isinstance(countries, list):
            continue
        for index, country in enumerate(countries):
            code = country.upper() if isinstance(country, str) else None
            if code is None:
                continue
            if code in first and first[code] != name:
                doc.problem(
                    ("scorecards", "territories", str(name), index),
                    f"{code} is already in territory '{first[code]}'",
                )
            first.setdefault(code, str(name))


def _translate(doc: YamlDocument, error: Any) -> ConfigProblem:
    """A pydantic error -> a problem at the right key path and line, in plain words."""
    raw_loc: tuple[Any, ...] = tuple(error["loc"])
    loc = _strip_tags(raw_loc)
    kind, message = error["type"], error["msg"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(raw_loc[:-1])
        message = f"unknown key '{loc[-1]}'" + did_you_mean(str(loc[-1]), allowed)
        if len(loc) >= 3 and loc[0] == "connections" and loc[-2] == "auth":
            vendor = next((part for part in raw_loc if part in AUTH_KEYS), None)
            if vendor:
                message += f" ({vendor} auth takes: {', '.join(AUTH_KEYS[vendor])})"
    elif kind == "union_tag_invalid":
        loc = (*loc, "vendor")
        tag = str(ctx.get("tag", value))
        message = f"unknown vendor '{tag}'; use one of {', '.join(VENDORS)}" + did_you_mean(
            tag, VENDORS
        )
    elif kind == "union_tag_not_found":
        loc = (*loc, "vendor")
        message = f"required: one of {', '.join(VENDORS)}"
    elif kind.startswith("missing"):
        message = "required key is missing"
    elif kind == "literal_error" and isinstance(value, str):
        expected = ctx.get("expected", "")
        choices = [part.strip(" '") for part in str(expected).replace(" or ", ",").split(",")]
        message = f"'{value}' is not one of {', '.join(c for c in choices if c)}" + did_you_mean(
            value, choices
        )
    elif kind in ("tuple_type", "list_type"):
        message = f"expected a list, got {type(value).__name__}"
    elif kind in ("dict_type", "dataclass_type", "model_type", "model_attributes_type"):
        message = f"expected a mapping (key: value), got {type(value).__name__}"
    elif kind == "too_short" and loc == ("connections",):
        message = "at least one connection is needed"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "string_pattern_mismatch" and loc and loc[-1] in ("name", "distributor_id"):
        message = "use letters, digits, '_', '-' and '.', starting with a letter or digit"
    return ConfigProblem(doc.file, doc.line_of(loc), loc, message)


def _strip_tags(loc: tuple[Any, ...]) -> Path_:
    """Drop the discriminated-union tag pydantic puts after ``connections[i]``."""
    out: list[str | int] = []
    for index, part in enumerate(loc):
        if part in VENDORS and index >= 2 and loc[index - 2] == "connections":
            continue
        out.append(part if isinstance(part, int) else str(part))
    return tuple(out)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at ``loc`` (a pydantic loc, tags included)."""
    tp: Any = Settings
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            members = [m for m in typing.get_args(tp) if _vendor_of(m) == part]
            if not members:
                return []
            tp = members[0]
        elif isinstance(part, int) and origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif hasattr(tp, "__pydantic_fields__") and part in tp.__pydantic_fields__:
            tp = tp.__pydantic_fields__[part].annotation
        else:
            return []
    tp = _unwrap(tp)
    return list(getattr(tp, "__pydantic_fields__", {}))


def _vendor_of(model: Any) -> str | None:
    field = getattr(model, "__pydantic_fields__", {}).get("vendor")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if args else None
