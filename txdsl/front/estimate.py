"""Resource estimates from the IR alone, allocating nothing.

- parameters: exact, summed from each component's ``param_count`` (a test
  builds the model and compares); shared layers count once, tied heads add
  no second embedding matrix;
- FLOPs per token of a forward pass at a given sequence length (a
  multiply-add counts 2);
- KV-cache bytes for decoding ``batch`` sequences of ``seq_len`` tokens;
- activation bytes a training step keeps for the backward pass (no
  recomputation), an approximation in the spirit of Korthikanti et al. 2022.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

from ..ir import Component, ModelIR, StackIR
from ..registry import Registry
from ..sdk.args import Dims
from .validate import dims_for

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MAX_PARAMS = 10**13  # ten trillion: a plugin's count beyond this is a bug, not a model


class EstimateError(ValueError):
    """A plugin's cost model returned something that can't be a count (a plugin bug)."""


@dataclass
class Estimate:
    params: int
    params_by_component: dict[str, int]
    layers: int
    flops_per_token: int
    seq_len: int
    batch: int
    dtype: str
    kv_cache_bytes: int
    activation_bytes: int
    unknown: list[str] = field(default_factory=list)  # components without a cost model

    def to_dict(self) -> dict:
        return asdict(self)


class _Counter:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.unknown: list[str] = []

    def args(self, comp: Component):
        return self.registry.args(comp.family, comp.kind).model_validate(comp.args)

    def params(self, comp: Component | None, dims: Dims) -> int:
        if comp is None:
            return 0
        try:
            n = self.args(comp).param_count(dims)
        except NotImplementedError:
            self.unknown.append(f"{comp.family} '{comp.kind}'")
            return 0
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or \
                not 0 <= n <= MAX_PARAMS:
            plugin = self.registry.plugin_of(comp.family, comp.kind)
            raise EstimateError(f"plugin '{plugin}': {comp.family} '{comp.kind}' param_count "
                                f"returned {n!r:.60}; a parameter count is an int in "
                                f"[0, {MAX_PARAMS:.0e}] (a bug in the plugin)")
        return int(n)

    def flops(self, comp: Component | None, dims: Dims, seq: int) -> int:
        if comp is None:
            return 0
        try:
            return self.args(comp).flops_per_token(dims, seq)
        except NotImplementedError:
            return 0


def estimate(ir: ModelIR, registry: Registry, *, batch: int = 1, seq_len: int | None = None,
             dtype: str = "float32") -> Estimate:
    c = _Counter(registry)
    e = ir.embedding
    edims = dims_for(ir, registry, width=e.size)
    seq = seq_len or edims.context or 1024
    by: dict[str, int] = {}
    emb = (e.tokens or 0) * e.size + e.token_types * e.size + (e.size if e.cls_token else 0)
    emb += c.params(e.patches, edims) + c.params(e.position, edims) + c.params(e.norm, edims)
    if getattr(e, "features", None):  # continuous inputs: Linear(features, size)
        emb += e.features * e.size + e.size
    if e.size != ir.d_model:
        emb += e.size * ir.d_model + ir.d_model  # the projection E -> d_model
    by["embedding"] = emb
    flops = 2 * e.size * ir.d_model if e.size != ir.d_model else 0
    kv_elems = 0
    act_elems = 0
    for stack in ir.stacks:
        p, f, kv, act = _stack(c, ir, stack, seq)
        by[stack.role] = p
        flops += f
        kv_elems += kv
        act_elems += act
    hdims = dims_for(ir, registry)
    for head in ir.heads:
        by[f"head {head.name}"] = c.params(head.head, hdims)
        flops += c.flops(head.head, hdims, seq)
    nbytes = DTYPE_BYTES.get(dtype, 4)
    return Estimate(
        params=sum(by.values()), params_by_component=by,
        layers=sum(len(s.layers) for s in ir.stacks), flops_per_token=flops, seq_len=seq,
        batch=batch, dtype=dtype, kv_cache_bytes=kv_elems * batch * nbytes,
        activation_bytes=act_elems * batch * seq * nbytes, unknown=sorted(set(c.unknown)))


def _stack(c: _Counter, ir: ModelIR, stack: StackIR, seq: int) -> tuple[int, int, int, int]:
    """(params, flops per token, decode-state elements per sequence, activation elements per token)."""
    dims = dims_for(ir, c.registry, stack=stack)
    d = ir.d_model
    params = c.params(stack.position, dims) + c.params(stack.final_norm, dims)
    from .dims import layer_positions
    params += sum(c.params(pos, dims) for pos in layer_positions(stack))  # one module each
    flops = kv = act = 0
    mem = getattr(stack, "memory_tokens", 0)
    dedicated = mem and stack.memory_form == "dedicated"
    params += mem * d  # the memory tokens
    if getattr(stack, "halting", None) is not None:  # the halting unit: Linear(d_model, 1)
        params += d + 1
        flops += 2 * d * len(stack.layers)
    for layer in stack.layers:
        subs = [x for x in (layer.attention, layer.cross_attention, layer.ffn) if x is not None]
        norms = len(subs) * (2 if layer.residual == "sandwich" else 1)
        if layer.shares is None:
            params += sum(c.params(x, dims) for x in subs) + norms * c.params(layer.norm, dims)
            if dedicated:  # the layer's memory-update twin
                params += sum(c.params(x, dims) for x in subs) + norms * c.params(layer.norm, dims)
        flops += sum(c.flops(x, dims, seq) for x in subs) + norms * c.flops(layer.norm, dims, seq)
        for attn in (layer.attention, layer.cross_attention):
            if attn is None:
                continue
            a = c.args(attn)
            heads = getattr(a, "heads", 1)
            if stack.role == "decoder" and hasattr(a, "state_elements"):
                # the decode state: the kind's own size (a window's is bounded); self-attention
                # holds the memory tokens' slots too
                kv += a.state_elements(dims, seq + (mem if attn is layer.attention else 0))
            act += 4 * d + heads * seq  # input, q, k, v (~d each) and the score row per head
        if layer.ffn is not None:
            hidden = getattr(c.args(layer.ffn), "hidden", 4 * d)
            act += d + 2 * hidden
        act += 2 * d * norms
    return params, flops, kv, act
