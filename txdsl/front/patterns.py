"""Per-layer patterns: which layers a ``layer[...]`` selects, and who shares with whom.

Selectors follow Python indexing (``layer[-1]``, ``layer[2:6]``,
``layer[3::4]``, ``layer[0, 5]``). Slices have Python's semantics: their
bounds clip to the layers there are, and a slice may select no layer, so a
parent's ``layer[3::4]`` still holds in a child that shrinks ``layers`` to 2.
An explicit index names one layer, so one past the last layer is an error.

Sharing (``share = ...`` in a stack; Lan et al. 2020, ALBERT; Takase &
Kiyono 2021 for ``cycle``/``sequence``):
- ``none``: every layer has its own parameters (the default);
- ``all``: every layer reuses layer 0's parameters;
- ``cycle(unique: k)``: layer i reuses layer ``i % k`` (0 1 2 0 1 2 ...);
- ``sequence(unique: k)``: consecutive runs share (0 0 1 1 2 2 ...).
Layers that share must be specified identically.
"""

from __future__ import annotations

import math

from . import syntax as s
from ..errors import SpecError
from .expr import ComponentValue, Scope, Symbol, Value, evaluate
from ..ir import LayerIR
from .merge import Slot
from .values import as_int


def _int(expr: s.Expr, scope: Scope) -> int:
    v = evaluate(expr, scope)
    if isinstance(v, Symbol):
        return as_int(v, expr.span, "a layer index", scope=scope)
    if isinstance(v, float) and v.is_integer():
        return int(v)  # `layers / 2` with an even `layers`, as integer arguments accept
    if isinstance(v, float):
        raise SpecError(f"a layer index must be an integer, not {v:g}", expr.span,
                        "`//` divides and rounds down: layer[layers // 2:]")
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError("a layer index must be an integer", expr.span)
    return v


def select_layers(block: s.LayerBlock, n: int, stack: str, scope: Scope) -> set[int]:
    """The layer indices ``block`` selects in a stack of ``n`` layers."""
    out: set[int] = set()
    last = n - 1
    for sel in block.selectors:
        if isinstance(sel, s.Index):
            i = _int(sel.value, scope)
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise SpecError(f"layer index {i} is out of range: the {stack} has {n} layers "
                                f"(0..{last})", sel.span)
            out.add(j)
            continue
        start, stop, step = (None if e is None else _int(e, scope)
                             for e in (sel.start, sel.stop, sel.step))
        if step == 0:
            raise SpecError("a slice step can't be 0", sel.step.span)  # type: ignore[union-attr]
        out.update(range(n)[slice(start, stop, step)])  # clips, may be empty
    return out


def sharing(value: Value, slot: Slot, layers: list[LayerIR]) -> list[LayerIR]:
    """``layers`` with ``shares`` set by the ``share`` value; checks they match."""
    n = len(layers)
    if isinstance(value, Symbol) and value.name in ("none", "all"):
        owner = [i for i in range(n)] if value.name == "none" else [0] * n
    elif isinstance(value, ComponentValue) and value.kind in ("cycle", "sequence"):
        if set(value.args) != {"unique"}:
            raise SpecError(f"{value.kind}() takes one argument: unique (the number of "
                            f"distinct layers)", value.span)
        k = as_int(value.args["unique"], value.arg_spans.get("unique"), "unique")
        if k > n:
            raise SpecError(f"unique ({k}) is more than the number of layers ({n})",
                            value.arg_spans.get("unique"))
        if value.kind == "cycle":
            owner = [i % k for i in range(n)]
        else:
            run = math.ceil(n / k)
            owner = [(i // run) * run for i in range(n)]
    else:
        raise SpecError("share must be none, all, cycle(unique: K) or sequence(unique: K)",
                        slot.value.span)
    out = []
    for i, layer in enumerate(layers):
        j = owner[i]
        if j != i:
            a, b = _shape(layers[j]), _shape(layer)
            if a != b:
                diff = next(k for k in a if a[k] != b[k])
                raise SpecError(f"layer {i} shares parameters with layer {j}, but their "
                                f"{diff} differ ({getattr(layers[j], diff)} vs "
                                f"{getattr(layer, diff)})", slot.span,
                                "layers that share parameters must be specified identically")
            layer = layer.model_copy(update={"shares": j})
        out.append(layer)
    return out


def _shape(layer: LayerIR) -> dict:
    d = layer.model_dump()
    d.pop("index")
    d.pop("shares")
    return d
