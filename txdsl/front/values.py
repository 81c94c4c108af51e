"""Turning evaluated values into what a slot needs: a number, a flag, a component.

Component arguments are checked against the registered kind's own pydantic
model; its validation errors are mapped back to the span of the argument
that caused them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..errors import ErrorSink, Span, SpecError, did_you_mean
from .expr import ComponentValue, Scope, Symbol, Value, describe
from ..ir import Component
from ..catalogue import unknown_kind
from ..registry import Registry


def as_int(v: Value, span: Span | None, what: str, minimum: int = 1, scope: Scope | None = None) -> int:
    if isinstance(v, Symbol) and scope is not None:
        raise SpecError(f"undefined name '{v.name}'", v.span or span,
                        did_you_mean(v.name, scope.names(), "parameters"))
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise SpecError(f"{what} must be an integer, not {describe(v)}", span)
    if v < minimum:
        raise SpecError(f"{what} must be at least {minimum}, got {v}", span)
    return v


def as_float(v: Value, span: Span | None, what: str, scope: Scope | None = None) -> float:
    if isinstance(v, Symbol) and scope is not None:
        raise SpecError(f"undefined name '{v.name}'", v.span or span,
                        did_you_mean(v.name, scope.names(), "parameters"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{what} must be a number, not {describe(v)}", span)
    return float(v)


def as_bool(v: Value, span: Span | None, what: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f"{what} must be true or false, not {describe(v)}", span)
    return v


def as_symbol(v: Value, span: Span | None, what: str, choices: tuple[str, ...]) -> str:
    name = v.name if isinstance(v, Symbol) else v if isinstance(v, str) else None
    if name not in choices:
        got = f"'{name}'" if name is not None else describe(v)
        raise SpecError(f"{what} must be one of {', '.join(choices)}; got {got}", span,
                        did_you_mean(name, choices, "choices") if name else None)
    return name  # type: ignore[return-value]


def as_component_value(v: Value, span: Span | None, what: str) -> ComponentValue | None:
    """``none`` -> None; a bare name -> a call with no arguments."""
    if isinstance(v, Symbol):
        return None if v.name == "none" else ComponentValue(v.name, {}, v.span, v.span)
    if isinstance(v, ComponentValue):
        return v
    raise SpecError(f"{what} needs a component, like layernorm(eps: 1e-5), not {describe(v)}",
                    span)


def _plain(v: Value) -> Any:
    if isinstance(v, Symbol):
        return None if v.name == "none" else v.name  # `none` means "no value" everywhere
    if isinstance(v, ComponentValue):
        return {"kind": v.kind, **{k: _plain(a) for k, a in v.args.items()}}
    return v


def to_component(cv: ComponentValue, family: str, registry: Registry, scope: Scope) -> Component:
    """Check ``cv`` against the registered kind's argument model."""
    if not registry.has(family, cv.kind):
        raise unknown_kind(family, cv.kind, registry, cv.name_span or cv.span)
    model = registry.args(family, cv.kind)
    fields = model.model_fields
    sink = ErrorSink()
    for name in cv.args:
        if name not in fields:
            hint = did_you_mean(name, fields, "arguments")
            if name == "causal" and family == "attention":
                hint = ("causality belongs to the stack: decoders are causal, encoders are not; "
                        "set `causal = ...` in the block to change that")
            sink.add(SpecError(f"{family} '{cv.kind}' has no argument '{name}'",
                               cv.arg_spans.get(name, cv.span), hint))
    sink.check()
    try:
        args = model.model_validate({k: _plain(v) for k, v in cv.args.items()})
    except ValidationError as exc:
        for e in exc.errors():
            arg = str(e["loc"][0]) if e["loc"] else None
            span = cv.arg_spans.get(arg, cv.span) if arg else cv.span
            given = cv.args.get(arg) if arg else None
            if e["type"] == "missing":
                sink.add(SpecError(f"{family} '{cv.kind}' needs argument '{arg}'", cv.span,
                                   f"arguments: {signature(model)}"))
            elif isinstance(given, Symbol) and e["type"] not in ("literal_error", "enum"):
                sink.add(SpecError(f"undefined name '{given.name}'", span,
                                   did_you_mean(given.name, scope.names(), "parameters")))
            elif e["type"] == "literal_error" and isinstance(given, (Symbol, str)):
                choices = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
                name = given.name if isinstance(given, Symbol) else given
                sink.add(SpecError(f"argument '{arg}' of {family} '{cv.kind}' can't be "
                                   f"'{name}'", span, did_you_mean(name, choices, "choices")))
            else:
                msg = e["msg"][0].lower() + e["msg"][1:]
                sink.add(SpecError(f"bad value for argument '{arg}' of {family} '{cv.kind}': {msg}",
                                   span))
        sink.check()
        raise  # pragma: no cover  (every error was reported above)
    return Component(family=family, kind=cv.kind, args=args.model_dump(mode="json"),
                     span=cv.span, arg_spans=dict(cv.arg_spans))


def signature(model: type) -> str:
    parts = []
    for name, f in model.model_fields.items():
        parts.append(name if f.is_required() else f"{name} = {_show(f.default)}")
    return ", ".join(parts) or "(none)"


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "none" if v is None else str(v)
