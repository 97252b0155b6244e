"""Compiles parsed SOQL into a row filter, a sort and a projection to Salesforce JSON."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sandbox.salesforce.schema import ID_TYPES, NUMERIC_TYPES, FieldDef, ObjectDef, normalize_id
from sandbox.salesforce.soql import (
    Comparison,
    Condition,
    Literal,
    Query,
    SoqlError,
    located,
)

Row = dict[str, Any]
Tables = Mapping[str, Mapping[str, Row]]  # object name -> id -> row
Getter = Callable[[Row], Any]
Renderer = Callable[[Row, dict[tuple[str, str], Any]], dict[str, Any]]

_NO_SUCH_COLUMN = (
    "No such column '{name}' on entity '{obj}'. If you are attempting to use a custom field, "
    "be sure to append the '__c' after the custom field name. Please reference your WSDL or "
    "the describe call for the appropriate names."
)
_NO_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_LITERAL_KINDS: dict[str, tuple[str, str]] = {  # field type -> (literal kind, type word)
    "datetime": ("datetime", "dateTime"),
    "date": ("date", "date"),
    "boolean": ("boolean", "boolean"),
}


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A field path walked through relationships: ``[(reference field, object)...]`` then
    the final field."""

    hops: tuple[tuple[FieldDef, ObjectDef], ...]
    target: FieldDef
    owner: ObjectDef


def resolve(query: Query, objects: Mapping[str, ObjectDef], start: ObjectDef, path: str,
            pos: int) -> ResolvedPath:
    parts = path.split(".")
    obj = start
    hops: list[tuple[FieldDef, ObjectDef]] = []
    for part in parts[:-1]:
        ref = obj.relationships.get(part.lower())
        if ref is None or not ref.reference_to or ref.reference_to[0] not in objects:
            raise SoqlError(
                "INVALID_FIELD", located(query.text, pos, _NO_RELATIONSHIP.format(name=part))
            )
        obj = objects[ref.reference_to[0]]
        hops.append((ref, obj))
        if len(hops) > 5:
            raise SoqlError("MALFORMED_QUERY", located(
                query.text, pos, "SOQL statements cannot query more than 5 levels of parents"))
    target = obj.by_lower.get(parts[-1].lower())
    if target is None:
        raise SoqlError(
            "INVALID_FIELD",
            located(query.text, pos, _NO_SUCH_COLUMN.format(name=parts[-1], obj=obj.name)),
        )
    return ResolvedPath(tuple(hops), target, obj)


def getter(resolved: ResolvedPath, tables: Tables) -> Getter:
    name = resolved.target.name
    if not resolved.hops:
        return lambda row: row.get(name)
    hops = [(ref.name, tables[obj.name]) for ref, obj in resolved.hops]

    def walk(row: Row) -> Any:
        current: Row | None = row
        for fk, table in hops:
            parent_id = current.get(fk) if current is not None else None
            current = table.get(parent_id) if parent_id else None
            if current is None:
                return None
        return current.get(name) if current is not None else None

    return walk


def _check_literal(query: Query, fdef: FieldDef, lit: Literal) -> Any:
    """The literal as the row stores it, or the error Salesforce gives for the mismatch."""
    if lit.kind == "null":
        return None
    expected = _LITERAL_KINDS.get(fdef.type)
    if fdef.type in NUMERIC_TYPES:
        expected = ("number", "double")
    if expected is not None:
        kind, word = expected
        if lit.kind != kind:
            quoted = "should not be enclosed in quotes"
            raise SoqlError("INVALID_FIELD", located(
                query.text, lit.pos,
                f"value of filter criterion for field '{fdef.name}' must be of type {word} "
                f"and {quoted}"))
        return lit.value
    if lit.kind != "string":
        raise SoqlError("INVALID_FIELD", located(
            query.text, lit.pos,
            f"value of filter criterion for field '{fdef.name}' must be of type string and "
            "should be enclosed in quotes"))
    if fdef.type in ID_TYPES:
        ident = normalize_id(lit.value)
        if ident is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", located(
                query.text, lit.pos, f"invalid ID field: {lit.value}"))
        return ident
    return lit.value.lower()


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _comparison(query: Query, objects: Mapping[str, ObjectDef], start: ObjectDef,
                tables: Tables, cond: Comparison) -> Callable[[Row], bool]:
    resolved = resolve(query, objects, start, cond.path, cond.pos)
    fdef = resolved.target
    get = getter(resolved, tables)
    fold = fdef.type not in ID_TYPES and fdef.type not in NUMERIC_TYPES and fdef.type not in (
        "boolean", "date", "datetime")

    def value_of(row: Row) -> Any:
        value = get(row)
        return value.lower() if fold and isinstance(value, str) else value

    if cond.op == "LIKE":
        if fdef.type not in ("string", "textarea", "url", "email", "phone", "picklist"):
            raise SoqlError("INVALID_FIELD", located(
                query.text, cond.pos, f"invalid operator on {fdef.type} field: LIKE"))
        regex = _like(cond.values[0].value)
        return lambda row: (v := get(row)) is not None and regex.fullmatch(v) is not None
    values = [_check_literal(query, fdef, lit) for lit in cond.values]
    if cond.op in ("IN", "NOT IN"):
        members = set(values)
        if cond.op == "IN":
            return lambda row: value_of(row) in members
        return lambda row: value_of(row) not in members
    want = values[0]
    if cond.op == "=":
        return lambda row: value_of(row) == want
    if cond.op == "!=":
        return lambda row: value_of(row) != want
    if want is None or fdef.type == "boolean":
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", located(
            query.text, cond.pos, f"invalid operator on {fdef.type} field: {cond.op}"))
    compare: dict[str, Callable[[Any], bool]] = {
        "<": lambda v: v is not None and v < want,
        "<=": lambda v: v is not None and v <= want,
        ">": lambda v: v is not None and v > want,
        ">=": lambda v: v is not None and v >= want,
    }
    test = compare[cond.op]
    return lambda row: test(value_of(row))


def predicate(query: Query, objects: Mapping[str, ObjectDef], start: ObjectDef,
              tables: Tables, cond: Condition) -> Callable[[Row], bool]:
    if isinstance(cond, Comparison):
        return _comparison(query, objects, start, tables, cond)
    parts = [predicate(query, objects, start, tables, c) for c in cond.parts]
    if cond.op == "NOT":
        inner = parts[0]
        return lambda row: not inner(row)
    if cond.op == "AND":
        return lambda row: all(p(row) for p in parts)
    return lambda row: any(p(row) for p in parts)


def sorter(query: Query, objects: Mapping[str, ObjectDef], start: ObjectDef,
           tables: Tables) -> Callable[[list[Row]], None]:
    """Sort in place: stable sorts from the last ORDER BY key to the first."""
    keys = []
    for key in query.order_by:
        resolved = resolve(query, objects, start, key.path, key.pos)
        get = getter(resolved, tables)
        fold = resolved.target.type not in ID_TYPES and isinstance(resolved.target.type, str) \
            and resolved.target.type in ("string", "textarea", "picklist", "url", "email")
        null_rank = 1 if key.nulls_last != key.descending else 0
        plain = resolved.target.name if not resolved.hops and not fold else None
        keys.append((get, fold, null_rank, key.descending, plain))

    def sort(rows: list[Row]) -> None:
        for get, fold, null_rank, descending, plain in reversed(keys):
            if plain is not None and _sort_plain(rows, plain, descending):
                continue
            def keyfn(row: Row, get: Getter = get, fold: bool = fold,
                      null_rank: int = null_rank) -> tuple[int, Any]:
                value = get(row)
                if value is None:
                    return (null_rank, 0)
                return (1 - null_rank, value.lower() if fold else value)
            rows.sort(key=keyfn, reverse=descending)

    return sort


def _sort_plain(rows: list[Row], name: str, descending: bool) -> bool:
    """Sort by a field of the row itself with a C-level key, when no row lacks it or holds
    null (null never compares with a value, so a null makes the sort fail and the general
    key places nulls): the order the general key gives, several times faster."""
    try:
        ordered = sorted(rows, key=itemgetter(name), reverse=descending)
    except (KeyError, TypeError):  # a field added after some rows were written, or a null
        return False
    rows[:] = ordered
    return True


@dataclass(slots=True)
class Projection:
    """Which fields of an object (and of its parents) a query returns."""

    obj: ObjectDef
    fields: list[str] = field(default_factory=list)
    parents: dict[str, tuple[str, str, Projection]] = field(default_factory=dict)
    # relationship name -> (foreign key field, parent table name, parent projection)

    def signature(self) -> tuple[Any, ...]:
        """What the rendered JSON depends on besides the rows: a cache key."""
        return (self.obj.name, tuple(self.fields),
                tuple((rel, fk, table, sub.signature())
                      for rel, (fk, table, sub) in self.parents.items()))

    def compile(self, tables: Tables, url_prefix: str) -> Renderer:
        """A fast row -> JSON-ready dict function. Parents are rendered once per ``memo``
        (a page): many opportunities share an account, an owner, a partner."""
        name = self.obj.name
        url = f"{url_prefix}{name}/"
        names = tuple(self.fields)
        parents = [(rel, fk, tables[table], sub.compile(tables, url_prefix))
                   for rel, (fk, table, sub) in self.parents.items()]

        def render(row: Row, memo: dict[tuple[str, str], Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"attributes": {"type": name, "url": url + row["Id"]}}
            try:
                for field_name in names:  # a plain loop beats zip/itemgetter here
                    out[field_name] = row[field_name]
            except KeyError:  # a field added after the row was written
                for field_name in names:
                    out[field_name] = row.get(field_name)
            for rel, fk, table, sub in parents:
                parent_id = row.get(fk)
                if parent_id is None:
                    out[rel] = None
                    continue
                key = (rel, parent_id)
                if key not in memo:
                    parent = table.get(parent_id)
                    memo[key] = None if parent is None else sub(parent, memo)
                out[rel] = memo[key]
            return out

        return render


def projection(query: Query, objects: Mapping[str, ObjectDef], start: ObjectDef) -> Projection:
    root = Projection(start)
    for path, pos in query.fields:
        resolved = resolve(query, objects, start, path, pos)
        node = root
        for ref, obj in resolved.hops:
            assert ref.relationship_name is not None  # resolve only follows named relationships
            entry = node.parents.get(ref.relationship_name)
            if entry is None:
                entry = (ref.name, obj.name, Projection(obj))
                node.parents[ref.relationship_name] = entry
            node = entry[2]
        if resolved.target.name in node.fields:
            raise SoqlError("MALFORMED_QUERY", located(
                query.text, pos, f"duplicate field selected: {path}"))
        node.fields.append(resolved.target.name)
    return root
