"""HTTP trigger route templates with ASP.NET Core semantics, as the Functions host routes them.

Supports `{name}`, constraints `{name:int}` (chained `{n:int:min(1)}`), optional `{name?}`,
defaults `{name=x}`, catch-all `{*rest}` and segments mixing literals and parameters; literal
text matches case-insensitively. Routes are tried most specific first.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from devstack.function_host.errors import RouteTemplateError

T = TypeVar("T")

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_CONSTRAINT = re.compile(r"^(?P<name>[a-zA-Z]+)(?:\((?P<args>.*)\))?$", re.DOTALL)

# Segment ranks, lower is more specific (ASP.NET Core route precedence).
_RANK_LITERAL = 1
_RANK_COMPLEX = 2
_RANK_CONSTRAINED = 3
_RANK_PARAMETER = 4
_RANK_CATCH_ALL = 5


def _parse_int(value: str, bounds: tuple[int, int]) -> int | None:
    if not re.fullmatch(r"[+-]?\d+", value):
        return None
    number = int(value)
    return number if bounds[0] <= number <= bounds[1] else None


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity"}


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _int_args(name: str, args: str | None, count: tuple[int, ...]) -> list[int]:
    parts = [] if args is None or not args.strip() else [a.strip() for a in args.split(",")]
    if len(parts) not in count or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise RouteTemplateError(
            f"route constraint {name}({args}) needs {count} integer argument(s)"
        )
    return [int(p) for p in parts]


_TYPE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: _parse_int(v, _INT32) is not None,
    "long": lambda v: _parse_int(v, _INT64) is not None,
    "bool": lambda v: v.lower() in {"true", "false"},
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]*", v) is not None,
    "guid": _is_guid,
    "decimal": _is_float,
    "double": _is_float,
    "float": _is_float,
    "datetime": _is_datetime,
}


def _compile_constraint(text: str) -> Callable[[str], bool]:
    """The check for one constraint such as `int`, `length(2,8)` or `range(1,9)`."""
    found = _CONSTRAINT.match(text)
    if found is None:
        raise RouteTemplateError(f"invalid route constraint {text!r}")
    name, args = found.group("name").lower(), found.group("args")
    if name in _TYPE_CONSTRAINTS and args is None:
        return _TYPE_CONSTRAINTS[name]
    if name == "minlength":
        (shortest,) = _int_args(name, args, (1,))
        return lambda v: len(v) >= shortest
    if name == "maxlength":
        (longest,) = _int_args(name, args, (1,))
        return lambda v: len(v) <= longest
    if name == "length":
        bounds = _int_args(name, args, (1, 2))
        return lambda v: bounds[0] <= len(v) <= bounds[-1]
    if name in {"min", "max", "range"}:
        limits = _int_args(name, args, (2,) if name == "range" else (1,))
        low = limits[0] if name in {"min", "range"} else _INT64[0]
        high = limits[-1] if name in {"max", "range"} else _INT64[1]
        return lambda v: (n := _parse_int(v, _INT64)) is not None and low <= n <= high
    if name == "regex" and args:
        try:
            pattern = re.compile(args, re.IGNORECASE)
        except re.error as exc:
            raise RouteTemplateError(f"invalid regex in route constraint {text!r}: {exc}") from exc
        return lambda v: pattern.search(v) is not None
    raise RouteTemplateError(f"unknown route constraint {text!r}")


def _split_constraints(text: str) -> list[str]:
    """Split `int:min(1):regex(a:b)` on colons outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return parts


@dataclass(frozen=True)
class RouteParameter:
    """One `{...}` of a template."""

    name: str
    checks: tuple[Callable[[str], bool], ...]
    optional: bool
    catch_all: bool
    default: str | None
    constrained: bool

    @classmethod
    def parse(cls, text: str, template: str) -> RouteParameter:
        body = text.strip()
        catch_all = body.startswith("*")
        body = body.lstrip("*")
        optional = body.endswith("?")
        body = body.removesuffix("?")
        default = None
        if "=" in body:
            body, default = body.split("=", 1)
        name, *constraint_texts = _split_constraints(body)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise RouteTemplateError(f"invalid route parameter {{{text}}} in {template!r}")
        checks = tuple(_compile_constraint(c) for c in constraint_texts)
        return cls(
            name=name,
            checks=checks,
            optional=optional or catch_all or default is not None,
            catch_all=catch_all,
            default=default,
            constrained=bool(checks),
        )

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


class RouteTemplate:
    """A compiled route template: a regex for the shape, Python checks for the constraints."""

    def __init__(self, template: str) -> None:
        self.template = template.strip().strip("/")
        self.parameters: list[RouteParameter] = []
        ranks: list[int] = []
        pattern = ""
        segments = self.template.split("/") if self.template else []
        for index, segment in enumerate(segments):
            regex, rank, optional = self._segment(segment)
            ranks.append(rank)
            slash = "/" if index else ""
            pattern += f"(?:{slash}{regex})?" if optional else f"{slash}{regex}"
        self.precedence = tuple(ranks)
        self._regex = re.compile(f"^{pattern}$", re.IGNORECASE | re.DOTALL)

    def _segment(self, segment: str) -> tuple[str, int, bool]:
        pieces = re.split(r"(\{[^{}]*\})", segment)
        if any(("{" in p or "}" in p) and not p.startswith("{") for p in pieces if p):
            raise RouteTemplateError(f"unbalanced braces in route {self.template!r}")
        params = [p for p in pieces if p.startswith("{")]
        if not params:
            if not segment:
                raise RouteTemplateError(f"empty segment in route {self.template!r}")
            return re.escape(segment), _RANK_LITERAL, False
        regex = ""
        whole = len(pieces) == 3 and not pieces[0] and not pieces[2]
        for piece in pieces:
            if not piece.startswith("{"):
                regex += re.escape(piece)
                continue
            param = RouteParameter.parse(piece[1:-1], self.template)
            group = f"p{len(self.parameters)}"
            self.parameters.append(param)
            value = ".*" if param.catch_all else ("[^/]+" if whole else "[^/]+?")
            regex += f"(?P<{group}>{value})"
        if not whole:
            return regex, _RANK_COMPLEX, False
        param = self.parameters[-1]
        if param.catch_all:
            return regex, _RANK_CATCH_ALL, True
        rank = _RANK_CONSTRAINED if param.constrained else _RANK_PARAMETER
        return regex, rank, param.optional

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a URL-decoded request path, or None when it does not match."""
        found = self._regex.match(path.strip("/"))
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, param in enumerate(self.parameters):
            value = found.group(f"p{index}")
            if value is None or value == "":
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not param.accepts(value):
                return None
            values[param.name] = value
        return values


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    """The target of a request and its route values."""

    target: T
    route_params: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    """The path matched at least one route, but none accepts the method."""

    allowed: frozenset[str]


@dataclass(frozen=True)
class _Entry(Generic[T]):
    template: RouteTemplate
    methods: frozenset[str] | None
    target: T


class RouteTable(Generic[T]):
    """All HTTP routes under one prefix, resolved most specific first."""

    def __init__(self, prefix: str, routes: Iterable[tuple[str, frozenset[str] | None, T]]) -> None:
        entries = [
            _Entry(RouteTemplate("/".join(p for p in (prefix, route.strip("/")) if p)), m, t)
            for route, m, t in routes
        ]
        self._entries = sorted(entries, key=lambda e: e.template.precedence)

    def resolve(self, path: str, method: str) -> RouteMatch[T] | MethodNotAllowed | None:
        """Find the route for a request path (URL-decoded) and method."""
        allowed: set[str] = set()
        for entry in self._entries:
            values = entry.template.match(path)
            if values is None:
                continue
            if entry.methods is None or method.upper() in entry.methods:
                return RouteMatch(entry.target, values)
            allowed |= entry.methods
        return MethodNotAllowed(frozenset(allowed)) if allowed else None
