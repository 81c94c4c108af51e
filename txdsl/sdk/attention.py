"""The attention contract (v2): a base class that owns everything but the attending.

Every attention module is called by the stack as::

    out = attn(x, memory=None, *, mask, position=None, cache=None, state=None)

- ``x`` ``(B, T, d_model)``; ``memory`` ``None`` for self-attention, else the
  ``(B, S, d_model)`` encoder output to cross-attend to;
- ``mask``: an :class:`~txdsl.sdk.mask.AttentionMask` (data: causal, key
  padding, query slots, documents, patterns), built once per stack forward;
- ``position``: a :class:`~txdsl.sdk.positions.PositionContext` (rotary
  tables and/or a score bias computed once per stack forward) or ``None``;
- ``cache``: this layer's decode state (:meth:`Attention.new_state`:
  a preallocated :class:`~txdsl.sdk.cache.StaticKV` for exact attention;
  :class:`~txdsl.sdk.cache.CrossKV` for cross-attention), or ``None``;
- ``state``: the :class:`StackState` shared by the stack's layers during one
  forward (scores a later layer reads, e.g. RealFormer), or ``None``.

It returns ``(B, T, d_model)``.

**Writing a variant.** Subclass :class:`Attention` and override
:meth:`Attention.attend`, which receives projected heads::

    def attend(self, q, k, v, *, mask, position, state):
        # q (B, H, T, hd); k, v (B, H_kv, S, hd) with cached keys first
        return ...  # (B, H, T, hd)

The base class does the rest: the q/k/v/out projections (or those you pass
in), head splitting, grouped-query attention (``repeat_kv``), rotary
positions, writing the decode state, cross-attention's key/value reuse and
the output projection. A variant that restricts *which* keys a query sees
(a window, global tokens) extends the mask with ``mask.with_pattern(key,
predicate)`` and calls :func:`softmax_attention`; a variant whose decode
state differs (a ring buffer, a recurrent state) overrides
:meth:`Attention.new_state` and :meth:`Attention.write_state`; one that
needs more (two streams, memory tokens) overrides ``forward`` itself. Its
argument model declares its cost model (``param_count``,
``flops_per_token``, ``state_elements``: :class:`txdsl.sdk.AttentionArgs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import CrossKV, StaticKV
from .mask import AttentionMask
from .positions import PositionContext

__all__ = ["Attention", "AttentionMask", "CrossKV", "PositionContext", "StackState",
           "StaticKV", "masked_fill_value", "repeat_kv", "softmax_attention"]


@dataclass(eq=False)
class StackState:
    """What flows between the layers of one stack forward, by declared name.

    - ``scores``: the previous layer's pre-softmax attention scores
      ``(B, H, T, S)`` (RealFormer's residual attention, He et al. 2020,
      https://arxiv.org/abs/2012.11747);
    - ``shared``: tensors one layer computes for the others (a bias shared by
      all layers), keyed by the kind that owns them;
    - ``inputs``: model inputs that components read at run time, by the
      model keyword's name (``global_attention_mask``, ``task_ids``); set by
      the model, read-only for components;
    - ``aux_losses``: auxiliary losses components add during the forward
      (:meth:`add_loss`: a load-balancing loss, a ponder cost, a span
      regulariser); the model returns them as ``TxOutput.aux_losses`` and
      their sum as ``TxOutput.aux_loss``;
    - ``mems``: segment memory (Transformer-XL, XLNet), the previous segment's
      hidden states, one ``(B, M, d_model)`` per layer that keeps memory, in
      layer order (the model's ``mems`` input); ``new_mems``: each such layer
      appends its own (its input after its memory, the last ``mem_len``
      positions, gradient stopped), returned as ``TxOutput.mems``. A layer's
      memory is ``mems[len(new_mems)]`` when it runs;
    - ``query_stream``: the number of trailing positions of the layers' input
      that are a second stream (XLNet's query stream, appended by the stack's
      position scheme for ``target_mapping``); 0: none. The stack returns them.
    """

    scores: Tensor | None = None
    shared: dict[str, Tensor] = field(default_factory=dict)
    inputs: dict[str, Tensor] = field(default_factory=dict)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    mems: tuple[Tensor, ...] | None = None
    new_mems: list[Tensor] = field(default_factory=list)
    query_stream: int = 0

    def next_memory(self) -> Tensor | None:
        """The segment memory of the layer about to append to ``new_mems`` (or ``None``)."""
        i = len(self.new_mems)
        return self.mems[i] if self.mems is not None and i < len(self.mems) else None

    def add_loss(self, name: str, value: Tensor) -> None:
        """Add ``value`` (a scalar tensor) to the auxiliary loss ``name`` (summed over layers)."""
        previous = self.aux_losses.get(name)
        self.aux_losses[name] = value if previous is None else previous + value


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """``(B, H_kv, S, hd)`` -> ``(B, H_kv * groups, S, hd)``: query head h reads kv head h // groups."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def masked_fill_value(dtype: torch.dtype) -> float:
    """What masked scores become: the dtype's min, finite, so a fully masked row gives
    uniform weights instead of NaN (as Hugging Face does)."""
    return torch.finfo(dtype).min


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, mask: AttentionMask,
                      bias: Tensor | None = None, scale: float, dropout: float = 0.0,
                      training: bool = False) -> Tensor:
    """The reference: ``softmax(q k^T * scale + bias, masked) v``, written out.

    q ``(B, H, T, hd)``; k, v ``(B, H, S, hd)`` (heads already repeated); bias
    ``(B|1, H, T, S)``. Scores and softmax in float32 for half-precision inputs.
    """
    T, S, dtype = q.shape[2], k.shape[2], q.dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    scores = torch.einsum("bhtd,bhsd->bhts", q.to(work), k.to(work)) * scale  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias.to(work)
    allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool or None
    if allowed is not None:
        scores = scores.masked_fill(~allowed, masked_fill_value(work))
    weights = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=training)
    return torch.einsum("bhts,bhsd->bhtd", weights, v.to(work)).to(dtype)  # (B, H, T, hd)


class Attention(nn.Module):
    """Projections, heads, GQA, positions, decode state and output projection.

    Constructed from built parts (``q_proj`` ``d -> H*hd``, ``k_proj`` and
    ``v_proj`` ``d -> H_kv*hd``, ``out_proj`` ``H*hd -> d``), so another linear
    drops in unchanged; :meth:`from_args` builds ``nn.Linear`` ones.

    ``no_kv_cache``: why this attention can't decode with a KV cache (``None``: it
    can). A cache is then refused when it is made (:meth:`new_state`), and
    ``generate`` decodes the model by re-running the sequence at each token.
    """

    no_kv_cache: str | None = None

    def __init__(self, *, heads: int, kv_heads: int, head_dim: int, q_proj: nn.Module,
                 k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Module,
                 scale: float | None = None, dropout: float = 0.0):
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.scale = scale if scale is not None else head_dim ** -0.5
        self.dropout = dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj

    @staticmethod
    def projections(args: Any, ctx: Any) -> dict[str, Any]:
        """The keyword arguments of the base constructor, with ``nn.Linear`` projections,
        for ``args`` (an :class:`~txdsl.sdk.AttentionArgs`) and ``ctx.dims``."""
        d, hd = ctx.dims.width, args.head_size(ctx.dims)
        h, h_kv = args.heads, args.n_kv_heads()
        return dict(heads=h, kv_heads=h_kv, head_dim=hd,
                    q_proj=nn.Linear(d, h * hd, bias=args.bias),
                    k_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
                    v_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
                    out_proj=nn.Linear(h * hd, d, bias=args.out_proj_bias()),
                    scale=args.scale, dropout=args.dropout)

    @classmethod
    def from_args(cls, args: Any, ctx: Any) -> "Attention":
        """The factory a plugin registers (``build=MyAttention.from_args``). The
        arguments were checked at resolution; this only builds."""
        return cls(**cls.projections(args, ctx))

    # ------------------------------------------------------------------ state

    def new_state(self, batch: int, capacity: int, *, device: Any = None,
                  dtype: torch.dtype = torch.float32) -> Any:
        """This layer's self-attention decode state for ``batch`` rows and ``capacity`` slots."""
        if self.no_kv_cache:
            raise ValueError(f"{type(self).__name__} can't decode with a KV cache: "
                             f"{self.no_kv_cache}; generate() decodes this model by re-running "
                             "the sequence at each new token (or through the segment memory)")
        return StaticKV(batch, self.kv_heads, capacity, self.head_dim, device=device, dtype=dtype)

    def write_state(self, state: Any, k: Tensor, v: Tensor,
                    mask: AttentionMask) -> tuple[Tensor, Tensor]:
        """Store this step's keys/values; return the keys/values to attend over."""
        return state.update(k, v, mask.q_slots)

    # ---------------------------------------------------------------- forward

    def split(self, x: Tensor, heads: int) -> Tensor:
        """``(B, T, heads*hd)`` -> ``(B, heads, T, hd)``."""
        B, T, _ = x.shape
        return x.view(B, T, heads, -1).transpose(1, 2)

    def self_projections(self, x: Tensor, position: PositionContext | None = None
                         ) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention's q ``(B, H, T, hd)``, k and v ``(B, H_kv, T, hd)`` of ``x``, q and
        k rotated by ``position``: for a kind whose decode step is its own."""
        q = self.split(self.q_proj(x), self.heads)
        k = self.split(self.k_proj(x), self.kv_heads)
        v = self.split(self.v_proj(x), self.kv_heads)
        if position is not None:
            q, k = position.rotate(q, k)
        return q, k, v

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position: PositionContext | None = None, cache: Any = None,
                state: StackState | None = None) -> Tensor:
        B, T, _ = x.shape
        q = self.split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        if memory is not None:
            mask = mask.as_cross()  # the keys are the memory's: position patterns don't apply
        if memory is None:  # self-attention: this step's keys join the cached ones
            k = self.split(self.k_proj(x), self.kv_heads)  # (B, H_kv, T, hd)
            v = self.split(self.v_proj(x), self.kv_heads)
            if position is not None:
                q, k = position.rotate(q, k)
            if cache is not None:
                k, v = self.write_state(cache, k, v, mask)  # (B, H_kv, S, hd)
        elif cache is not None and cache.ready:  # cross-attention: the memory's keys, kept
            k, v = cache.k, cache.v
            position = None
        else:  # cross-attention: keys and values of the memory, never rotated
            k = self.split(self.k_proj(memory), self.kv_heads)  # (B, H_kv, S, hd)
            v = self.split(self.v_proj(memory), self.kv_heads)
            if cache is not None:
                cache.store(k, v)
            position = None
        y = self.attend(q, k, v, mask=mask, position=position, state=state)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask: AttentionMask,
               position: PositionContext | None, state: StackState | None) -> Tensor:
        """q ``(B, H, T, hd)``, k/v ``(B, H_kv, S, hd)`` -> ``(B, H, T, hd)``. Override this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement attend()")

    def extra_repr(self) -> str:
        kv = f", kv_heads={self.kv_heads}" if self.kv_heads != self.heads else ""
        return f"heads={self.heads}{kv}, head_dim={self.head_dim}, scale={self.scale:.4g}"
