"""Printing a resolved IR back as ``.tx`` text: a flat spec, every value explicit.

The result parses back to an equal IR (same hash): parameters with their
evaluated values, the embedding, each stack with layer 0's fields and
``layer[...]`` blocks for the layers that differ, sharing as ``share = ...``,
and the heads. It is what ``txdsl show --tx`` prints: the model as the
compiler sees it, with no ``import`` or ``extends`` left to follow.
"""

from __future__ import annotations

import math
import re
from typing import Any

from . import syntax as s
from .fmt import format_spec
from ..ir import Component, LayerIR, ModelIR, StackIR

LAYER_FIELDS = ("residual", "norm", "attention", "cross_attention", "ffn", "dropout")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = {"model", "extends", "import", "layer", "true", "false"}


class Unprintable(ValueError):
    """The IR holds something the language has no spelling for."""


def to_tx(ir: ModelIR) -> str:
    """``ir`` as canonical ``.tx`` text that resolves back to an equal IR."""
    return format_spec(s.SpecFile(imports=(), models=(_Printer(ir).model(),)))


class _Printer:
    def __init__(self, ir: ModelIR):
        self.ir = ir
        self.params = set(ir.params)

    def value(self, v: Any) -> s.Expr:
        if isinstance(v, bool):
            return s.Bool(v)
        if v is None:
            return s.Name("none")
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise Unprintable(f"{v} has no .tx spelling")
            return s.Unary("-", s.Number(-v)) if v < 0 else s.Number(v)
        if isinstance(v, str):
            # A bare name unless it would read as a parameter reference or a keyword.
            if _IDENT.match(v) and v not in self.params and v not in _KEYWORDS:
                return s.Name(v)
            return s.String(v)
        if isinstance(v, dict) and "kind" in v:
            return s.Call(v["kind"], tuple(s.Arg(k, self.value(a)) for k, a in v.items()
                                           if k != "kind"))
        raise Unprintable(f"{v!r} has no .tx spelling")

    def component(self, c: Component | None) -> s.Expr:
        if c is None:
            return s.Name("none")
        return s.Call(c.kind, tuple(s.Arg(k, self.value(v)) for k, v in c.args.items()))

    def assign(self, name: str, value: s.Expr) -> s.Assign:
        return s.Assign((name,), value)

    def model(self) -> s.ModelDecl:
        ir = self.ir
        body: list[s.Stmt] = [self.assign(k, self.value(v)) for k, v in ir.params.items()]
        if "d_model" not in ir.params:
            body.insert(0, self.assign("d_model", s.Number(ir.d_model)))
        body.append(self.embedding())
        body += [self.stack(st) for st in ir.stacks]
        if ir.heads:
            body.append(s.Block("heads", None, tuple(
                self.assign(h.name, self.component(h.head)) for h in ir.heads)))
        return s.ModelDecl(ir.name, None, tuple(body))

    def embedding(self) -> s.Block:
        e, out = self.ir.embedding, []
        if e.tokens is not None:
            out.append(self.assign("tokens", s.Number(e.tokens)))
        if e.patches is not None:
            out.append(self.assign("patches", self.component(e.patches)))
        if getattr(e, "features", None) is not None:
            out.append(self.assign("features", s.Number(e.features)))
        if e.size != self.ir.d_model:
            out.append(self.assign("size", s.Number(e.size)))
        for name in ("position", "norm"):
            if getattr(e, name) is not None:
                out.append(self.assign(name, self.component(getattr(e, name))))
        if e.token_types:
            out.append(self.assign("token_types", s.Number(e.token_types)))
        if e.dropout:
            out.append(self.assign("dropout", s.Number(e.dropout)))
        for flag in ("scale", "cls_token"):
            if getattr(e, flag):
                out.append(self.assign(flag, s.Bool(True)))
        return s.Block("embedding", None, tuple(out))

    def fields(self, layer: LayerIR) -> dict[str, s.Expr]:
        return {"residual": s.Name(layer.residual), "norm": self.component(layer.norm),
                "attention": self.component(layer.attention),
                "cross_attention": self.component(layer.cross_attention),
                "ffn": self.component(layer.ffn), "dropout": s.Number(layer.dropout)}

    def stack(self, st: StackIR) -> s.Block:
        first = self.fields(st.layers[0])
        body: list[s.Stmt] = [self.assign(k, v) for k, v in first.items()
                              if not (k == "cross_attention" and v == s.Name("none"))]
        if st.causal != (st.role == "decoder"):
            body.append(self.assign("causal", s.Bool(st.causal)))
        if st.position is not None:
            body.append(self.assign("position", self.component(st.position)))
        if st.final_norm is not None:
            body.append(self.assign("final_norm", self.component(st.final_norm)))
        share = _share(st)
        if share is not None:
            body.append(self.assign("share", share))
        if getattr(st, "memory_tokens", 0):
            body.append(self.assign("memory_tokens", s.Number(st.memory_tokens)))
            body.append(self.assign("memory_form", s.Name(st.memory_form)))
        halting = getattr(st, "halting", None)
        if halting is not None:
            body.append(self.assign("halting", s.Call("act", tuple(
                s.Arg(k, self.value(v)) for k, v in halting.model_dump().items()
                if k != "kind"))))
        groups: dict[tuple, list[int]] = {}
        for layer in st.layers[1:]:
            diff = tuple((k, v) for k, v in self.fields(layer).items() if v != first[k])
            if diff:
                groups.setdefault(diff, []).append(layer.index)
        for diff, idx in groups.items():
            sel = tuple(s.Index(s.Number(i)) for i in idx)
            body.append(s.LayerBlock(sel, tuple(self.assign(k, v) for k, v in diff)))
        nope = tuple(s.Index(s.Number(layer.index)) for layer in st.layers
                     if getattr(layer, "no_position", False))
        if nope:
            body.append(s.LayerBlock(nope, (self.assign("position", s.Name("none")),)))
        own: dict[str, list] = {}  # layer[...] { position = scheme(...) }
        for layer in st.layers:
            if getattr(layer, "position", None) is not None:
                own.setdefault(layer.position.canonical_json(), [layer.position, []])[1].append(
                    s.Index(s.Number(layer.index)))
        for pos, idx in own.values():
            body.append(s.LayerBlock(tuple(idx), (self.assign("position", self.component(pos)),)))
        return s.Block(st.role, s.Number(len(st.layers)), tuple(body))


def _share(st: StackIR) -> s.Expr | None:
    """The ``share`` value that gives this stack's sharing (None: no sharing)."""
    owners = [layer.index if layer.shares is None else layer.shares for layer in st.layers]
    n = len(owners)
    if owners == list(range(n)):
        return None
    if owners == [0] * n:
        return s.Name("all")
    for k in range(1, n + 1):
        if owners == [i % k for i in range(n)]:
            return s.Call("cycle", (s.Arg("unique", s.Number(k)),))
        run = math.ceil(n / k)
        if owners == [(i // run) * run for i in range(n)]:
            return s.Call("sequence", (s.Arg("unique", s.Number(k)),))
    raise Unprintable(f"the {st.role}'s sharing pattern {owners} has no .tx spelling")
