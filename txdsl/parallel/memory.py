"""Per-rank memory under tensor parallelism (``tp``) and FSDP2 (``fsdp``), allocating nothing.

- parameters: the model is built on the ``meta`` device and each unique
  parameter's rank-0 shard is sized from the plan, as DTensor chunks it
  (``torch.chunk``: ``ceil(size / n)`` on the split dimension): ``colwise``
  splits a weight's rows and the bias, ``rowwise`` a weight's columns (the
  bias stays whole), ``vocab_*`` the vocabulary rows; FSDP2 then splits dim 0
  of what TP left by ``fsdp`` (``ceil``). Rank 0 holds the largest shards, so
  this is the peak over ranks. Gradients and an optimizer's states follow the
  parameters' sharding (not counted here).
- KV cache: each self- and cross-attention decode state of the decoder, the
  heads split by ``tp`` where the kind declares a heads split (one head per
  rank where K/V are replicated: ``kv_heads`` < ``tp``) (the batch is
  not split by FSDP: each data-parallel rank decodes its own rows).
- activations (training, no recomputation, no sequence parallelism; the
  estimate of :mod:`txdsl.front.estimate` split as Megatron-LM splits it,
  Korthikanti et al. 2022, https://arxiv.org/abs/2205.05198): a split
  attention's q/k/v and score rows and a split FFN's hidden units divide by
  ``tp``; layer inputs and norms are whole on every rank. ``batch`` is each
  rank's own batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..front.dims import component_args
from ..front.estimate import DTYPE_BYTES
from ..front.validate import dims_for
from ..ir import ModelIR
from ..registry import Registry
from .plan import model_plan

# How each style splits a parameter of the module it is declared on: name -> dim (None: whole).
SPLITS = {"colwise": {"weight": 0, "bias": 0}, "rowwise": {"weight": 1, "bias": None},
          "vocab_embedding": {"weight": 0}, "vocab_head": {"weight": 0, "bias": 0}}


@dataclass
class RankMemory:
    tp: int
    fsdp: int
    params: int  # elements of rank 0's parameter shards
    param_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    batch: int
    seq_len: int
    dtype: str
    replicated: list[str]  # components without a tensor-parallel declaration

    def to_dict(self) -> dict:
        return asdict(self)


def _chunk(size: int, n: int) -> int:
    return math.ceil(size / n) if n > 1 else size


def per_rank(ir: ModelIR, registry: Registry, *, tp: int = 1, fsdp: int = 1, batch: int = 1,
             seq_len: int | None = None, dtype: str = "float32") -> RankMemory:
    """Rank 0's parameters, KV cache and activations (see the module docstring)."""
    from ..back.construct import construct

    entries = model_plan(ir, registry, tp)
    styles = {(f"{e.path}.{sub}" if sub else e.path): style for e in entries if e.plan
              for sub, style in e.plan.styles.items()} if tp > 1 else {}
    meta = construct(ir, registry=registry, device="meta", init_std=None)
    params = 0
    for name, p in meta.named_parameters():  # unique: a tied head's weight counts once
        shape = list(p.shape)
        module, _, pname = name.rpartition(".")
        dim = SPLITS.get(styles.get(module, ""), {}).get(pname)
        if dim is not None:
            shape[dim] = _chunk(shape[dim], tp)
        if fsdp > 1 and shape:
            shape[0] = _chunk(shape[0], fsdp)
        params += math.prod(shape)
    # attention path -> what its decode state divides by (tp, or kv_heads when K/V are
    # replicated and each rank keeps one head)
    split = {e.path: (max(e.plan.kv_replicated.values()) if e.plan.kv_replicated else tp)
             for e in entries if e.plan is not None and e.plan.local}
    nbytes = DTYPE_BYTES.get(dtype, 4)
    kv, act, seq = _state_and_activations(ir, registry, split, tp, seq_len)
    return RankMemory(tp=tp, fsdp=fsdp, params=params, param_bytes=params * nbytes,
                      kv_cache_bytes=kv * batch * nbytes,
                      activation_bytes=act * batch * seq * nbytes, batch=batch, seq_len=seq,
                      dtype=dtype, replicated=sorted({e.what for e in entries if e.plan is None}))


def _state_and_activations(ir: ModelIR, registry: Registry, split: dict[str, int], tp: int,
                           seq_len: int | None) -> tuple[int, int, int]:
    """(decode-state elements per sequence, activation elements per token, seq_len)."""
    seq = seq_len or dims_for(ir, registry).context or 1024
    d, kv, act = ir.d_model, 0, 0
    for stack in ir.stacks:
        dims = dims_for(ir, registry, stack=stack)
        for layer in stack.layers:
            own = layer if layer.shares is None else stack.layers[layer.shares]
            prefix = f"{stack.role}.layers.{own.index}"
            subs = [x for x in (layer.attention, layer.cross_attention, layer.ffn) if x]
            norms = len(subs) * (2 if layer.residual == "sandwich" else 1)
            for sub in ("attention", "cross_attention"):
                comp = getattr(layer, sub)
                if comp is None:
                    continue
                a = component_args(registry, comp)
                n = tp if f"{prefix}.{sub}" in split else 1
                if stack.role == "decoder" and hasattr(a, "state_elements"):
                    kv += a.state_elements(dims, seq) // split.get(f"{prefix}.{sub}", 1)
                act += d + (3 * d + getattr(a, "heads", 1) * seq) // n
            if layer.ffn is not None:
                hidden = getattr(component_args(registry, layer.ffn), "hidden", 4 * d)
                n = tp if tp > 1 and _declares(registry, layer.ffn, dims, tp) else 1
                act += d + 2 * hidden // n
            act += 2 * d * norms
    return kv, act, seq


def _declares(registry: Registry, comp, dims, tp: int) -> bool:
    plan = component_args(registry, comp).tp_plan(dims, tp)
    return plan is not None and bool(plan.styles)
