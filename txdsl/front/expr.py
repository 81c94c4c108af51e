"""Compile-time evaluation of spec expressions: arithmetic over parameters.

Never Python ``eval``: this walks the syntax tree. Names resolve lazily
against a :class:`Scope` (with cycle detection, so parameters may be written
in any order and an ``extends`` child can change a value its parent's
expressions use). A name that is not a parameter is a :class:`Symbol`
(``gelu``, ``pre``, ``none``); a call that is not ``min``/``max`` is a
:class:`ComponentValue`, given meaning by the slot it lands in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Union

from . import syntax as s
from ..errors import SpecError, Span, did_you_mean

MAX_INT = 2**63  # a spec value beyond int64 is a mistake, not a model


@dataclass(frozen=True)
class Symbol:
    """A bare name that is not a parameter: an enum-like value such as ``gelu``."""

    name: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ComponentValue:
    """An evaluated call ``kind(arg: value, ...)``, not yet checked against a schema."""

    kind: str
    args: dict[str, "Value"]
    span: Span | None = field(default=None, compare=False)
    name_span: Span | None = field(default=None, compare=False)
    arg_spans: dict[str, Span] = field(default_factory=dict, compare=False)

    def with_arg(self, name: str, value: "Value", span: Span | None) -> "ComponentValue":
        args = dict(self.args)
        args[name] = value
        spans = dict(self.arg_spans)
        if span is not None:
            spans[name] = span
        return ComponentValue(self.kind, args, self.span, self.name_span, spans)


Value = Union[int, float, bool, str, Symbol, ComponentValue]


class Scope:
    """Parameters by name, evaluated on first use and remembered."""

    def __init__(self, params: dict[str, s.Assign]):
        self._exprs = {name: a.value for name, a in params.items()}
        self._values: dict[str, Value] = {}
        self._active: list[str] = []
        self.referenced: set[str] = set()  # names some expression refers to

    def names(self) -> list[str]:
        return list(self._exprs)

    def __contains__(self, name: str) -> bool:
        return name in self._exprs

    def lookup(self, name: str, span: Span | None) -> Value:
        if name in self._values:
            return self._values[name]
        if name in self._active:
            cycle = " -> ".join(self._active[self._active.index(name):] + [name])
            raise SpecError(f"parameter '{name}' is defined in terms of itself ({cycle})", span)
        self._active.append(name)
        try:
            value = evaluate(self._exprs[name], self)
        finally:
            self._active.pop()
        self._values[name] = value
        return value

    def values(self) -> dict[str, Value]:
        return {name: self.lookup(name, None) for name in self._exprs}


def describe(v: Value) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Symbol):
        return f"the name '{v.name}'"
    return f"the component '{v.kind}(...)'"


def _number(v: Value, span: Span | None, scope: Scope, op: str) -> int | float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, Symbol):
        raise SpecError(f"undefined name '{v.name}'", v.span or span,
                        did_you_mean(v.name, scope.names(), "parameters"))
    raise SpecError(f"'{op}' needs numbers, but got {describe(v)}", span)


def _checked(v: int | float, span: Span | None) -> int | float:
    if isinstance(v, int) and abs(v) >= MAX_INT:
        raise SpecError("value too large (beyond 2**63)", span)
    if isinstance(v, float) and not math.isfinite(v):
        raise SpecError("value too large (not a finite number)", span)
    return v


def _power(a: int | float, b: int | float, span: Span | None) -> int | float:
    if a == 0 and b < 0:
        raise SpecError("division by zero", span,
                        f"0 ** {b} is 1 / 0 ** {-b}; the base of a negative power can't be 0")
    if isinstance(a, int) and isinstance(b, int) and b >= 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > 64:
            raise SpecError("value too large (beyond 2**63)", span)
    try:
        result = a**b
    except OverflowError:
        raise SpecError("value too large (not a finite number)", span) from None
    if isinstance(result, complex):
        raise SpecError(f"{a} ** {b} is not a real number", span)
    return result


_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
}


def evaluate(expr: s.Expr, scope: Scope) -> Value:
    """The value of ``expr``; raises :class:`SpecError` at the offending place."""
    if isinstance(expr, (s.Number, s.String, s.Bool)):
        return expr.value
    if isinstance(expr, s.Name):
        if expr.id in scope:
            scope.referenced.add(expr.id)
            return scope.lookup(expr.id, expr.span)
        return Symbol(expr.id, expr.span)
    if isinstance(expr, s.Unary):
        v = _number(evaluate(expr.operand, scope), expr.span, scope, expr.op)
        return -v if expr.op == "-" else v
    if isinstance(expr, s.Binary):
        a = _number(evaluate(expr.left, scope), expr.left.span, scope, expr.op)
        b = _number(evaluate(expr.right, scope), expr.right.span, scope, expr.op)
        if expr.op == "**":
            return _checked(_power(a, b, expr.span), expr.span)
        if expr.op in ("/", "//", "%") and b == 0:
            raise SpecError("division by zero", expr.right.span,
                            "the right-hand side of this expression evaluates to 0")
        return _checked(_BINARY[expr.op](a, b), expr.span)
    if isinstance(expr, s.Call):
        return _call(expr, scope)
    raise SpecError(f"unsupported expression {type(expr).__name__}", getattr(expr, "span", None))


def _call(expr: s.Call, scope: Scope) -> Value:
    if expr.name in ("min", "max"):
        if not expr.args or any(a.name is not None for a in expr.args):
            raise SpecError(f"{expr.name}() takes one or more plain values, like "
                            f"{expr.name}(a, b)", expr.span)
        nums = [_number(evaluate(a.value, scope), a.span, scope, expr.name) for a in expr.args]
        return min(nums) if expr.name == "min" else max(nums)
    args: dict[str, Value] = {}
    spans: dict[str, Span] = {}
    for a in expr.args:
        if a.name is None:
            raise SpecError(f"arguments of '{expr.name}' need names, like "
                            f"{expr.name}(name: value)", a.span,
                            "only min() and max() take plain values")
        if a.name in args:
            raise SpecError(f"argument '{a.name}' is given twice", a.span)
        args[a.name] = evaluate(a.value, scope)
        spans[a.name] = a.span
    return ComponentValue(expr.name, args, expr.span, expr.name_span, spans)
