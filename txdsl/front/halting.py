"""``halting = act(...)`` in a stack: its value checked into a :class:`~txdsl.ir.HaltingIR`.

A structural field like ``share`` (no plugin family): ``none`` (every layer runs, the
default) or ``act(threshold: 0.99, ponder: 0.01, timestep: true, bias: 1.0)``, the
Universal Transformer's adaptive computation time over the stack's layers (Dehghani
et al. 2019, https://arxiv.org/abs/1807.03819). Every error is located at the value or
the argument.
"""

from __future__ import annotations

from ..errors import SpecError, did_you_mean
from ..ir import HaltingIR
from .expr import ComponentValue, Scope, Symbol, Value
from .merge import Slot
from .values import as_bool, as_float

ARGS = ("threshold", "ponder", "timestep", "bias")
SIGNATURE = "act(threshold: 0.99, ponder: 0.01, timestep: true, bias: 1.0)"


def halting(value: Value, slot: Slot, scope: Scope) -> HaltingIR | None:
    """The stack's halting, or ``None`` for ``none``."""
    if isinstance(value, Symbol) and value.name == "none":
        return None
    if isinstance(value, Symbol) and value.name == "act":
        return HaltingIR()
    if not isinstance(value, ComponentValue) or value.kind != "act":
        raise SpecError(f"halting must be none or {SIGNATURE}", slot.value.span,
                        "act: adaptive computation time over the layers (Universal Transformer)")
    out: dict = {}
    for name, v in value.args.items():
        span = value.arg_spans.get(name, value.span)
        if name not in ARGS:
            raise SpecError(f"act() has no argument '{name}'", span,
                            did_you_mean(name, ARGS, "arguments") or f"act takes: {SIGNATURE}")
        if name == "timestep":
            out[name] = as_bool(v, span, "timestep")
            continue
        x = as_float(v, span, name, scope)
        if name == "threshold" and not 0.0 < x <= 1.0:
            raise SpecError(f"threshold must be in (0, 1], got {x}", span,
                            "a position halts once its halting probabilities sum past it")
        if name == "ponder" and x < 0:
            raise SpecError(f"ponder (the ponder cost's weight) can't be negative, got {x}", span)
        out[name] = x
    return HaltingIR(**out)
