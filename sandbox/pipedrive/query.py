"""Validating a list request's query string as Pipedrive does (400 on bad values)."""

from __future__ import annotations

from typing import Any

from sandbox.pipedrive.fields import DEALS, InputError
from sandbox.pipedrive.store import (
    SORT_FIELDS,
    BadCursorError,
    ListQuery,
    decode_cursor,
    parse_rfc3339,
)

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
DEAL_STATUSES = frozenset({"open", "won", "lost", "deleted"})


def int_arg(args: Any, name: str, default: int | None, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InputError(f"{name}: required")
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InputError(f"{name}: expected an integer, received {raw!r}") from exc
    if not low <= value <= high:
        raise InputError(f"{name}: must be between {low} and {high}")
    return value


def parse_list_args(args: Any, entity: str) -> tuple[ListQuery, frozenset[str] | None]:
    """Validate a list request's query string as Pipedrive does (400 on bad values)."""
    limit = int_arg(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    sort_by = args.get("sort_by") or "id"
    if sort_by not in SORT_FIELDS:
        raise InputError(f"sort_by: must be one of {', '.join(SORT_FIELDS)}")
    direction = args.get("sort_direction") or "asc"
    if direction not in ("asc", "desc"):
        raise InputError("sort_direction: must be asc or desc")
    times: dict[str, int | None] = {}
    for name in ("updated_since", "updated_until"):
        raw = args.get(name)
        try:
            times[name] = parse_rfc3339(raw) if raw else None
        except ValueError as exc:
            raise InputError(f"{name}: expected an RFC 3339 date-time, received {raw!r}") from exc
    statuses = None
    if entity == DEALS and args.get("status"):
        statuses = frozenset(s.strip() for s in args["status"].split(","))
        if not statuses <= DEAL_STATUSES:
            raise InputError("status: must be open, won, lost or deleted")
    ids = None
    if args.get("ids"):
        try:
            ids = frozenset(int(i) for i in args["ids"].split(","))
        except ValueError as exc:
            raise InputError("ids: expected comma separated integers") from exc
        if len(ids) > 100:
            raise InputError("ids: at most 100 ids are allowed")
    owner = int_arg(args, "owner_id", 0, 1, 2**31) if args.get("owner_id") else None
    org = (int_arg(args, "org_id", 0, 1, 2**31)
           if entity == DEALS and args.get("org_id") else None)
    custom_keys = None
    if args.get("custom_fields"):
        custom_keys = frozenset(k.strip() for k in args["custom_fields"].split(","))
        if len(custom_keys) > 15:
            raise InputError("custom_fields: a maximum of 15 keys is allowed")
    after = None
    if args.get("cursor"):
        try:
            after = decode_cursor(args["cursor"], sort_by, direction == "desc")
        except BadCursorError as exc:
            raise InputError(str(exc)) from exc
    query = ListQuery(
        sort_by=sort_by, descending=direction == "desc", since=times["updated_since"],
        until=times["updated_until"], statuses=statuses, owner_id=owner, org_id=org, ids=ids,
        after=after, limit=limit,
    )
    return query, custom_keys
