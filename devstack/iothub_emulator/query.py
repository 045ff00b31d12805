"""The part of IoT Hub's query language the emulator serves: `SELECT * FROM devices [WHERE ...]`.

A WHERE is comparisons `<path> <op> <literal>` joined by AND and OR, with parentheses; AND
binds tighter. Keywords are case-insensitive, property names are not. As in IoT Hub, only
primitives of one type compare: a missing property, an object or array, or a value of another
type makes a comparison undefined, and a twin is selected only when its WHERE is true
(undefined AND false is false, undefined OR true is true). Strings compare by code point, so
ISO 8601 UTC timestamps compare by time. Anything else is a QuerySyntaxError, which the
endpoint answers with 400.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_QUERY_LENGTH = 8192
_MAX_NESTING = 32

Scalar = str | int | float | bool | None


class QuerySyntaxError(ValueError):
    """The query is not in the subset served here; the message says where."""


_TOKENS = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<operator><=|>=|<>|!=|=|<|>)
  | (?P<punctuation>[()*])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"'": "'", '"': '"', "\\": "\\"}
_KEYWORDS = frozenset({"select", "from", "where", "and", "or", "true", "false", "null"})
_LITERAL_KEYWORDS: Mapping[str, Scalar] = {"true": True, "false": False, "null": None}
_ORDERINGS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, operator, punctuation, name, keyword, end
    text: str
    position: int
    value: Scalar = None


def _unescape(body: str, position: int) -> str:
    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[escape]
        if escape.startswith("u") and len(escape) == 5:
            return chr(int(escape[1:], 16))
        raise QuerySyntaxError(f"unsupported escape \\{escape[:1]} in the string at {position}")

    return _ESCAPES.sub(replace, body)


def _number(text: str, position: int) -> int | float:
    digits = text.removeprefix("-")
    sign = -1 if text.startswith("-") else 1
    if digits[:2].lower() == "0x":
        return sign * int(digits[2:], 16)
    if re.fullmatch(r"\d+", digits):
        return sign * int(digits)
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise QuerySyntaxError(f"the number at {position} is out of range")
    return value


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKENS.match(text, position)
        if match is None:
            raise QuerySyntaxError(f"unexpected character {text[position]!r} at {position}")
        kind, lexeme = match.lastgroup or "", match.group()
        if kind == "string":
            tokens.append(_Token(kind, lexeme, position, _unescape(lexeme[1:-1], position)))
        elif kind == "number":
            tokens.append(_Token(kind, lexeme, position, _number(lexeme, position)))
        elif kind == "name" and lexeme.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", lexeme.lower(), position))
        elif kind != "space":
            tokens.append(_Token(kind, lexeme, position))
        position = match.end()
    tokens.append(_Token("end", "end of query", len(text)))
    return tokens


_MISSING = object()


def _resolve(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _kind(value: Any) -> str | None:
    """The JSON type of a primitive; None for an object or array (they never compare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    op: str  # =, !=, <, >, <=, >= (<> is read as !=)
    value: Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool | None:
        """True, False, or None when undefined."""
        actual = _resolve(document, self.path)
        if actual is _MISSING:
            return None
        kind = _kind(actual)
        if kind is None or kind != _kind(self.value):
            return None
        if self.op == "=":
            return bool(actual == self.value)
        if self.op == "!=":
            return bool(actual != self.value)
        if kind not in ("number", "string"):
            return None
        return _ORDERINGS[self.op](actual, self.value)


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Condition, ...]

    def evaluate(self, document: Mapping[str, Any]) -> bool | None:
        results = [term.evaluate(document) for term in self.terms]
        if False in results:
            return False
        return None if None in results else True


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Condition, ...]

    def evaluate(self, document: Mapping[str, Any]) -> bool | None:
        results = [term.evaluate(document) for term in self.terms]
        if True in results:
            return True
        return None if None in results else False


Condition = Comparison | AllOf | AnyOf


@dataclass(frozen=True)
class TwinQuery:
    where: Condition | None

    def matches(self, twin: Mapping[str, Any]) -> bool:
        """Whether a twin document (as GET /twins/{id} returns it) is selected."""
        return self.where is None or self.where.evaluate(twin) is True


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    @property
    def _next(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _fail(self, expected: str) -> QuerySyntaxError:
        token = self._next
        found = token.text if len(token.text) <= 40 else token.text[:40] + "..."
        return QuerySyntaxError(f"expected {expected} at {token.position}, found {found!r}")

    def _keyword(self, word: str) -> None:
        if self._next.kind != "keyword" or self._next.text != word:
            raise self._fail(word.upper())
        self._take()

    def _at(self, kind: str, text: str) -> bool:
        return self._next.kind == kind and self._next.text == text

    def query(self) -> TwinQuery:
        self._keyword("select")
        if not self._at("punctuation", "*"):
            raise self._fail("* (only SELECT * is supported)")
        self._take()
        self._keyword("from")
        if self._next.kind != "name" or self._next.text.lower() != "devices":
            raise self._fail("devices (only FROM devices is supported)")
        self._take()
        where: Condition | None = None
        if self._at("keyword", "where"):
            self._take()
            where = self._any_of(0)
        if self._next.kind != "end":
            raise self._fail("AND, OR or the end of the query")
        return TwinQuery(where)

    def _any_of(self, depth: int) -> Condition:
        terms = [self._all_of(depth)]
        while self._at("keyword", "or"):
            self._take()
            terms.append(self._all_of(depth))
        return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))

    def _all_of(self, depth: int) -> Condition:
        terms = [self._primary(depth)]
        while self._at("keyword", "and"):
            self._take()
            terms.append(self._primary(depth))
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def _primary(self, depth: int) -> Condition:
        if self._at("punctuation", "("):
            if depth >= _MAX_NESTING:
                raise QuerySyntaxError(f"parentheses nest deeper than {_MAX_NESTING}")
            self._take()
            condition = self._any_of(depth + 1)
            if not self._at("punctuation", ")"):
                raise self._fail(")")
            self._take()
            return condition
        return self._comparison()

    def _comparison(self) -> Comparison:
        if self._next.kind != "name":
            raise self._fail("a property path such as tags.location")
        path = tuple(self._take().text.split("."))
        if self._next.kind != "operator":
            raise self._fail("a comparison operator (=, !=, <>, <, >, <=, >=)")
        op = self._take().text
        return Comparison(path, "!=" if op == "<>" else op, self._literal())

    def _literal(self) -> Scalar:
        token = self._next
        if token.kind in ("string", "number"):
            self._take()
            return token.value
        if token.kind == "keyword" and token.text in _LITERAL_KEYWORDS:
            self._take()
            return _LITERAL_KEYWORDS[token.text]
        raise self._fail("a string, number, true, false or null")


def parse_query(text: str) -> TwinQuery:
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    return _Parser(_tokens(text)).query()
