"""Shapes between Salesforce JSON and connector values (records, SaveResults, payloads)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from connectors.base import WriteResult
from connectors.salesforce.failures import RETRYABLE_STATUS

Reshaper = Callable[[dict[str, Any]], None]
_MISSING = object()


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__} to Salesforce")


def save_result(record_id: str, result: Mapping[str, Any]) -> WriteResult:
    if result.get("success"):
        return WriteResult(record_id, ok=True)
    errors = result.get("errors") or [{}]
    code = str(errors[0].get("statusCode") or "UNKNOWN")
    message = "; ".join(
        f"{e.get('statusCode')}: {e.get('message')}"
        + (f" (fields: {', '.join(e['fields'])})" if e.get("fields") else "")
        for e in errors)
    return WriteResult(record_id, ok=False, error=message, code=code,
                       retryable=code in RETRYABLE_STATUS)


def reshaper(dotted: list[str], renames: Mapping[str, str]) -> Reshaper | None:
    """Records as the mapping names fields. Parent fields come nested
    (``{"Account": {"Name": ...}}``) and are named with dots (``Account.Name``); fields asked
    for in another case than their API name are renamed back to how they were asked for."""
    if not dotted and not renames:
        return None
    paths = [(path, path.split(".")) for path in dotted]
    tops = {hops[0] for _, hops in paths}
    renamed = list(renames.items())

    def flatten(rec: dict[str, Any]) -> None:
        for wanted, api_name in renamed:
            rec[wanted] = rec.pop(api_name, None)
        for path, hops in paths:
            node: Any = rec
            for hop in hops:
                if not isinstance(node, dict):
                    node = None
                    break
                value = node.get(hop)
                node = value if value is not None or hop in node else _get_ci(node, hop)
            rec[path] = node
        for top in tops:
            if rec.pop(top, _MISSING) is _MISSING:
                lowered = top.lower()
                for key in [k for k in rec if k.lower() == lowered and "." not in k]:
                    del rec[key]

    return flatten


def _get_ci(node: dict[str, Any], key: str) -> Any:
    if key in node:
        return node[key]
    lowered = key.lower()
    return next((v for k, v in node.items() if k.lower() == lowered), None)
