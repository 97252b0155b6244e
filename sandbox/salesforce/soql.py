"""The SOQL subset the Salesforce sandbox understands, parsed into a plan it can run.

Grammar (keywords case-insensitive)::

    SELECT path[, path...] FROM Object
      [WHERE condition] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST][, ...]]
      [LIMIT n] [OFFSET n]
    condition := term ((AND term)* | (OR term)*)     -- mixing AND/OR needs parentheses
    term      := NOT term | '(' condition ')' | path op value
               | path [NOT] IN '(' value[, ...] ')' | path LIKE 'pattern'
    op        := = | != | <> | < | <= | > | >=
    value     := 'quoted string' | number | true | false | null
               | 2026-01-31T12:00:00Z / +hh:mm (unquoted datetime) | 2026-01-31 (date)

Errors are raised as :class:`SoqlError` carrying the Salesforce ``errorCode`` and a
message in Salesforce's shape (the query, a caret, ``ERROR at Row:1:Column:n``).
Field and type checks happen in :mod:`sandbox.salesforce.schema`, which resolves paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
    '"': '"', "'": "'", "\\": "\\", "_": "\\_", "%": "\\%",
}
KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
})


class SoqlError(Exception):
    """A query Salesforce would refuse; ``code`` is its ``errorCode``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True, slots=True)
class Literal:
    """A value in a WHERE clause: ``kind`` is string|number|boolean|null|datetime|date."""

    kind: str
    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Comparison:
    path: str
    op: str  # = != < <= > >= IN NOT IN LIKE
    values: tuple[Literal, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # AND | OR | NOT
    parts: tuple[Condition, ...]


Condition = Comparison | BoolOp


@dataclass(frozen=True, slots=True)
class OrderKey:
    path: str
    descending: bool
    nulls_last: bool
    pos: int


@dataclass(slots=True)
class Query:
    text: str
    fields: list[tuple[str, int]]  # (path as written, position)
    object_name: str
    object_pos: int
    where: Condition | None = None
    order_by: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


def located(text: str, pos: int, message: str) -> str:
    """Salesforce's error layout: the query line, a caret under the column, row/column."""
    line = text.replace("\n", " ")
    return f"\n{line}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n{message}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise SoqlError(
                "MALFORMED_QUERY", located(text, pos, f"unexpected token: '{text[pos]}'")
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def unquote(token: Token, text: str) -> str:
    body = token.text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    located(text, token.pos, f"Invalid string literal '{token.text}'. "
                            "Illegal character sequence '\\" + nxt + "' in string literal."),
                )
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_datetime_literal(text: str) -> str:
    """An unquoted SOQL datetime literal as the sandbox stores datetimes (UTC, ms, +0000)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return format_datetime(value)


def format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- token helpers ----------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError(
                "MALFORMED_QUERY",
                located(self.text, len(self.text), "unexpected token: '<EOF>'"),
            )
        self.i += 1
        return token

    def unexpected(self, token: Token | None) -> SoqlError:
        if token is None:
            return SoqlError(
                "MALFORMED_QUERY", located(self.text, len(self.text), "unexpected token: '<EOF>'")
            )
        return SoqlError(
            "MALFORMED_QUERY", located(self.text, token.pos, f"unexpected token: '{token.text}'")
        )

    def keyword(self, *words: str) -> Token | None:
        token = self.peek()
        if token is not None and token.kind == "ident" and token.upper in words:
            self.i += 1
            return token
        return None

    def expect_keyword(self, word: str) -> Token:
        token = self.peek()
        if token is None or token.kind != "ident" or token.upper != word:
            raise self.unexpected(token)
        self.i += 1
        return token

    def expect_punct(self, char: str) -> Token:
        token = self.peek()
        if token is None or token.text != char:
            raise self.unexpected(token)
        self.i += 1
        return token

    def path(self) -> Token:
        token = self.next()
        if token.kind != "ident" or token.upper in KEYWORDS:
            raise self.unexpected(token)
        return token

    # -- grammar ----------------------------------------------------------------------
    def query(self) -> Query:
        self.expect_keyword("SELECT")
        fields = [self.path()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]  # peek checked on the left
            self.next()
            fields.append(self.path())
        self.expect_keyword("FROM")
        obj = self.path()
        query = Query(self.text, [(t.text, t.pos) for t in fields], obj.text, obj.pos)
        if self.keyword("WHERE"):
            query.where = self.condition()
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            query.order_by.append(self.order_key())
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]  # peek checked on the left
                self.next()
                query.order_by.append(self.order_key())
        if self.keyword("LIMIT"):
            query.limit = self.integer()
        if self.keyword("OFFSET"):
            query.offset = self.integer()
        if self.peek() is not None:
            raise self.unexpected(self.peek())
        return query

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)

    def order_key(self) -> OrderKey:
        token = self.path()
        descending = bool(self.keyword("DESC"))
        if not descending:
            self.keyword("ASC")
        nulls_last = descending  # Salesforce: ASC puts nulls first, DESC puts them last
        if self.keyword("NULLS"):
            which = self.keyword("FIRST", "LAST")
            if which is None:
                raise self.unexpected(self.peek())
            nulls_last = which.upper == "LAST"
        return OrderKey(token.text, descending, nulls_last, token.pos)

    def condition(self) -> Condition:
        first = self.term()
        parts = [first]
        joiner: str | None = None
        while True:
            token = self.peek()
            if token is None or token.kind != "ident" or token.upper not in ("AND", "OR"):
                break
            if joiner is not None and token.upper != joiner:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    located(self.text, token.pos, f"unexpected token: '{token.text}'"),
                )
            joiner = token.upper
            self.next()
            parts.append(self.term())
        if joiner is None:
            return first
        return BoolOp(joiner, tuple(parts))

    def term(self) -> Condition:
        if self.keyword("NOT"):
            return BoolOp("NOT", (self.term(),))
        token = self.peek()
        if token is not None and token.text == "(":
            self.next()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        path = self.path()
        if self.keyword("NOT"):
            self.expect_keyword("IN")
            return Comparison(path.text, "NOT IN", self.value_list(), path.pos)
        if self.keyword("IN"):
            return Comparison(path.text, "IN", self.value_list(), path.pos)
        if self.keyword("LIKE"):
            value = self.value()
            if value.kind != "string":
                raise SoqlError(
                    "MALFORMED_QUERY",
                    located(self.text, value.pos, "LIKE operator only valid on string values"),
                )
            return Comparison(path.text, "LIKE", (value,), path.pos)
        op = self.next()
        if op.kind != "op":
            raise self.unexpected(op)
        text = "!=" if op.text == "<>" else op.text
        return Comparison(path.text, text, (self.value(),), path.pos)

    def value_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        values = [self.value()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]  # peek checked on the left
            self.next()
            values.append(self.value())
        self.expect_punct(")")
        return tuple(values)

    def value(self) -> Literal:
        token = self.next()
        if token.kind == "string":
            return Literal("string", unquote(token, self.text), token.pos)
        if token.kind == "number":
            return Literal("number", float(token.text), token.pos)
        if token.kind == "datetime":
            try:
                return Literal("datetime", parse_datetime_literal(token.text), token.pos)
            except ValueError:
                raise self.unexpected(token) from None
        if token.kind == "date":
            return Literal("date", token.text, token.pos)
        if token.kind == "ident" and token.upper in ("TRUE", "FALSE"):
            return Literal("boolean", token.upper == "TRUE", token.pos)
        if token.kind == "ident" and token.upper == "NULL":
            return Literal("null", None, token.pos)
        raise self.unexpected(token)


def parse(text: str) -> Query:
    """Parse a SOQL string; raises :class:`SoqlError` (``MALFORMED_QUERY``) when it is not."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "Query must not be empty")
    return _Parser(text).query()
