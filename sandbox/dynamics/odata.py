"""OData pieces of the Dataverse sandbox: ``$filter`` subset, ``$orderby`` keys, Prefer
headers, paging cookies (``$skiptoken``) and delta tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from sandbox.dynamics.schema import CHOICE_TYPES, LOOKUP_TYPES, Attribute

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


class ODataError(Exception):
    """A query the Web API would refuse; carries Dataverse's code and HTTP status."""

    def __init__(self, message: str, *, code: str = "0x80060888", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')"
    r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)"
    r"|(?P<date>\d{4}-\d{2}-\d{2})"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_./]*)"
    r"|(?P<punct>[(),]))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
             "lt": "LessThan", "le": "LessThanOrEqual"}
_EDM = {"DateTime": "Edm.DateTimeOffset", "String": "Edm.String", "Memo": "Edm.String",
        "Uniqueidentifier": "Edm.Guid", "Integer": "Edm.Int32", "BigInt": "Edm.Int64",
        "Money": "Edm.Decimal", "Decimal": "Edm.Decimal", "Double": "Edm.Double",
        "Boolean": "Edm.Boolean", "Picklist": "Edm.Int32", "State": "Edm.Int32",
        "Status": "Edm.Int32", "Lookup": "Edm.Guid", "Owner": "Edm.Guid", "Customer": "Edm.Guid"}


def normalize_datetime(text: str) -> str:
    """A datetime literal as the sandbox stores it: UTC, whole seconds, ``Z``."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Literal:
    kind: str  # str guid dt date num null bool
    value: Any


class FilterParser:
    """Recursive descent over the ``$filter`` subset a replicating client sends."""

    def __init__(self, text: str, props: Mapping[str, Attribute], type_name: str) -> None:
        self.tokens = self._lex(text)
        self.pos = 0
        self.props = props
        self.type_name = type_name

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ODataError(f"Syntax error at position {pos} in '{text}'.")
            kind = match.lastgroup or ""
            out.append((kind, match.group(kind)))
            pos = match.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        return out

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise ODataError(f"Syntax error: unexpected '{self.tokens[self.pos][1]}'.")
        return predicate

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ODataError("Syntax error: unexpected end of $filter.")
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token and token[0] == "ident" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda row: any(p(row) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        return lambda row: all(p(row) for p in parts)

    def _unary(self) -> Predicate:
        if self._keyword("not"):
            inner = self._unary()
            return lambda row: not inner(row)
        token = self._peek()
        if token == ("punct", "("):
            self.pos += 1
            inner = self._or()
            if self._next() != ("punct", ")"):
                raise ODataError("Syntax error: ')' expected.")
            return inner
        return self._comparison()

    def _attribute(self, name: str) -> Attribute:
        attr = self.props.get(name)
        if attr is None:
            raise ODataError(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{self.type_name}'.", code="0x80060888")
        return attr

    def _comparison(self) -> Predicate:
        kind, name = self._next()
        if kind != "ident":
            raise ODataError(f"Syntax error: property name expected, found '{name}'.")
        if name in ("contains", "startswith", "endswith") and self._peek() == ("punct", "("):
            return self._function(name)
        attr = self._attribute(name)
        op_kind, op = self._next()
        op = op.lower()
        if op_kind != "ident" or op not in _OPS:
            raise ODataError(f"Syntax error: operator expected after '{name}', found '{op}'.")
        literal = self._literal()
        return _compile_comparison(attr, op, literal)

    def _function(self, name: str) -> Predicate:
        self._next()
        _kind, prop = self._next()
        attr = self._attribute(prop)
        if self._next() != ("punct", ","):
            raise ODataError("Syntax error: ',' expected.")
        literal = self._literal()
        if self._next() != ("punct", ")"):
            raise ODataError("Syntax error: ')' expected.")
        if literal.kind != "str" or attr.type not in ("String", "Memo"):
            raise ODataError(f"'{name}' needs a string column and a string literal.")
        needle = str(literal.value).casefold()
        key = attr.prop
        test = {"contains": str.__contains__, "startswith": str.startswith,
                "endswith": str.endswith}[name]
        return lambda row: (v := row.get(key)) is not None and test(str(v).casefold(), needle)

    def _literal(self) -> _Literal:
        kind, text = self._next()
        if kind == "str":
            return _Literal("str", text[1:-1].replace("''", "'"))
        if kind == "guid":
            return _Literal("guid", text.lower())
        if kind == "dt":
            try:
                return _Literal("dt", normalize_datetime(text))
            except ValueError as exc:
                raise ODataError(f"Invalid datetime literal '{text}'.") from exc
        if kind == "date":
            return _Literal("date", text)
        if kind == "num":
            return _Literal("num", float(text) if "." in text else int(text))
        if kind == "ident" and text in ("null", "true", "false"):
            return _Literal("null" if text == "null" else "bool", text == "true")
        raise ODataError(f"Syntax error: literal expected, found '{text}'.")


_ACCEPTS = {
    "DateTime": {"dt", "date"}, "String": {"str"}, "Memo": {"str"},
    "Uniqueidentifier": {"guid"}, "Lookup": {"guid"}, "Owner": {"guid"}, "Customer": {"guid"},
    "Integer": {"num"}, "BigInt": {"num"}, "Money": {"num"}, "Decimal": {"num"},
    "Double": {"num"}, "Picklist": {"num"}, "State": {"num"}, "Status": {"num"},
    "Boolean": {"bool"},
}
_LITERAL_EDM = {"str": "Edm.String", "guid": "Edm.Guid", "dt": "Edm.DateTimeOffset",
                "date": "Edm.Date", "num": "Edm.Int32", "bool": "Edm.Boolean"}


def _compile_comparison(attr: Attribute, op: str, literal: _Literal) -> Predicate:
    key = attr.prop
    if literal.kind == "null":
        if op == "eq":
            return lambda row: row.get(key) is None
        if op == "ne":
            return lambda row: row.get(key) is not None
        return lambda row: False
    if literal.kind not in _ACCEPTS.get(attr.type, set()):
        raise ODataError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{_EDM.get(attr.type, 'Edm.String')}' and '{_LITERAL_EDM[literal.kind]}' for "
            f"operator kind '{_OP_NAMES[op]}'.")
    value = literal.value
    if attr.type == "DateTime" and literal.kind == "date" and not attr.date_only:
        value = f"{value}T00:00:00Z"
    if attr.type == "DateTime" and attr.date_only and literal.kind == "dt":
        value = value[:10]
    if literal.kind == "str":
        value = value.casefold()
        return _string_comparison(key, op, value)
    compare = _COMPARE[op]
    return lambda row: (v := row.get(key)) is not None and compare(v, value)


def _string_comparison(key: str, op: str, value: str) -> Predicate:
    compare = _COMPARE[op]
    return lambda row: (v := row.get(key)) is not None and compare(str(v).casefold(), value)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}


def compile_filter(text: str, props: Mapping[str, Attribute], type_name: str) -> Predicate:
    return FilterParser(text, props, type_name).parse()


# -- ordering -----------------------------------------------------------------------------

class _Desc:
    """Inverts ordering of one sort-key element for ``desc`` columns."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True, slots=True)
class OrderBy:
    columns: tuple[tuple[Attribute, bool], ...]  # (attribute, descending), pk last

    def key(self, row: Row) -> tuple[Any, ...]:
        out: list[Any] = []
        for attr, desc in self.columns:
            value = row.get(attr.prop)
            if isinstance(value, str) and attr.type in ("String", "Memo"):
                value = value.casefold()
            element = (0, 0) if value is None else (1, value)
            out.append(_Desc(element) if desc else element)
        return tuple(out)


def parse_orderby(text: str | None, props: Mapping[str, Attribute], pk: Attribute,
                  type_name: str) -> OrderBy:
    columns: list[tuple[Attribute, bool]] = []
    for part in (text or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(f"Syntax error in $orderby at '{part.strip()}'.")
        attr = props.get(words[0])
        if attr is None:
            raise ODataError(
                f"Could not find a property named '{words[0]}' on type "
                f"'Microsoft.Dynamics.CRM.{type_name}'.")
        columns.append((attr, len(words) == 2 and words[1].lower() == "desc"))
    if not any(attr is pk for attr, _ in columns):
        columns.append((pk, False))
    return OrderBy(tuple(columns))


# -- Prefer --------------------------------------------------------------------------------

_PREFER_ITEM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*(?:=\s*("(?:[^"]*)"|[^,;\s]*))?[^,]*,?')


def parse_prefer(values: list[str]) -> dict[str, str]:
    """``Prefer`` preferences by name; quoted values lose their quotes."""
    out: dict[str, str] = {}
    for header in values:
        for match in _PREFER_ITEM.finditer(header):
            if match.group(1):
                out[match.group(1).lower()] = (match.group(2) or "").strip('"')
    return out


def annotation_wanted(spec: str | None, name: str) -> bool:
    if not spec:
        return False
    for pattern in spec.split(","):
        pattern = pattern.strip()
        if pattern in ("*", name) or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
            return True
    return False


# -- paging cookies and delta tokens ------------------------------------------------------------

def encode_skiptoken(order: OrderBy, last: Row, first: Row, page: int, tracking: bool,
                     baseline: int | None = None) -> str:
    """A Dataverse-style paging cookie: the sort values of the page's last row."""
    parts = []
    for attr, _desc in order.columns:
        parts.append(f"<{attr.logical} {_cookie_attr('last', last.get(attr.prop))} "
                     f"{_cookie_attr('first', first.get(attr.prop))} />")
    extra = f' baseline="{baseline}"' if baseline is not None else ""
    inner = f'<cookie page="{page}"{extra}>{"".join(parts)}</cookie>'
    return (f'<cookie pagenumber="{page + 1}" pagingcookie="{quote(quote(inner, safe=""))}" '
            f'istracking="{tracking}" />')


def _cookie_attr(name: str, value: Any) -> str:
    if value is None:
        return f'{name}null="1"'
    if isinstance(value, bool):
        value = int(value)
    return f"{name}={quoteattr(str(value))}"


@dataclass(frozen=True, slots=True)
class PagingCookie:
    page: int
    last: Row
    baseline: int | None


def decode_skiptoken(token: str, order: OrderBy) -> PagingCookie:
    try:
        outer = ElementTree.fromstring(token)
        inner = ElementTree.fromstring(unquote(unquote(outer.attrib["pagingcookie"])))
        page = int(inner.attrib["page"])
        baseline = int(inner.attrib["baseline"]) if "baseline" in inner.attrib else None
        by_name = {child.tag: child.attrib for child in inner}
        last: Row = {}
        for attr, _desc in order.columns:
            values = by_name[attr.logical]
            last[attr.prop] = None if values.get("lastnull") else _typed(attr, values["last"])
    except (ElementTree.ParseError, KeyError, ValueError) as exc:
        raise ODataError("The paging cookie ($skiptoken) is not valid for this query.",
                         code="0x80040203") from exc
    return PagingCookie(page, last, baseline)


def _typed(attr: Attribute, text: str) -> Any:
    if attr.type in ("Integer", "BigInt") or attr.type in CHOICE_TYPES:
        return int(text)
    if attr.type in ("Money", "Decimal", "Double"):
        return float(text)
    if attr.type == "Boolean":
        return text == "1"
    if attr.type == "Uniqueidentifier" or attr.type in LOOKUP_TYPES:
        return text.lower()
    return text


def encode_deltatoken(version: int, issued: datetime) -> str:
    return f"{version}!{issued.astimezone(UTC):%m/%d/%Y %H:%M:%S}"


def decode_deltatoken(token: str) -> tuple[int, datetime]:
    version, _, stamp = token.partition("!")
    issued = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    return int(version), issued
