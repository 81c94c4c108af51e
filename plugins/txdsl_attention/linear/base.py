"""What the linearized kinds share: arguments, the forward, the recurrent decode state.

A linearized attention replaces ``softmax(q k^T)`` by ``phi(q) phi(k)^T`` for a
feature map ``phi``, so it never forms the ``T x S`` score matrix
(Katharopoulos et al. 2020, https://arxiv.org/abs/2006.16236). A kind supplies
only :meth:`LinearizedAttention.features` (``phi`` of queries and keys, given
their slots) and its feature size; this module does the rest:

- bidirectional and cross-attention: :func:`forms.bidirectional`;
- causal: :func:`forms.recurrent` (impl ``reference``) or :func:`forms.chunked`
  (impl ``chunked``, preferred), chosen at build;
- key padding: padded keys' features are zeroed, so they add nothing;
- packed documents and mask patterns (Hugging Face mask functions): the
  explicit ``T x S`` form :func:`forms.masked` (exact, quadratic: a prefix
  sum can't skip arbitrary keys), chosen at run time by the mask;
- decoding: a :class:`~.state.RecurrentState` ``(B, H, F, d_v)`` + ``(B, H, F)``
  instead of a key/value cache, updated in place with this step's real keys.

Position schemes that only add a score bias (ALiBi, T5 buckets) have no score
matrix to act on: ``accepts = {"qk"}`` makes validation refuse them at the
position's line; rotary positions rotate q and k before ``phi``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import ArgError, Dims
from txdsl.sdk.attention import Attention, AttentionMask, repeat_kv

from . import forms
from .state import RecurrentState


class LinearizedArgs(AttentionArgs):
    """Arguments every linearized kind has (besides ``heads``, ``kv_heads``, ``head_dim``, ``bias``)."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})
    # Appended to validation's hint when a position scheme acts where this kind can't.
    position_note: ClassVar[str] = ("it never forms a score matrix for a bias to act on; use "
                                    "rope, or learned/sinusoidal positions in the embedding")

    chunk: PositiveInt = Field(default=16, description="tokens per chunk of the chunked causal "
                               "form (intra-chunk dense, inter-chunk recurrent)")

    def feature_size(self, dims: Dims) -> int:
        """``F``: the size of ``phi(q)``."""
        return self.head_size(dims)

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.dropout:
            raise ArgError(f"dropout: {self.dropout} has nothing to act on: a linearized "
                           "attention never forms attention weights", arg="dropout",
                           hint="drop the argument (use the layer's dropout)")

    def feature_flops(self, dims: Dims) -> int:
        """FLOPs of ``phi`` for one query and one key, all heads."""
        return 2 * self.heads * self.feature_size(dims)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        F, dv = self.feature_size(dims), self.head_size(dims)
        proj = 2 * self.param_count(dims)
        # state update phi(k) v^T and z += phi(k); read-out phi(q)^T S and phi(q)^T z
        recurrence = self.heads * (2 * F * dv + F + 2 * F * dv + 2 * F)
        return proj + self.feature_flops(dims) + recurrence

    def state_elements(self, dims: Dims, seq_len: int) -> int:
        """Constant: ``S`` ``(H, F, d_v)`` and ``z`` ``(H, F)``, whatever ``seq_len``."""
        F = self.feature_size(dims)
        return self.heads * (F * self.head_size(dims) + F)


class LinearizedAttention(Attention):
    """Linear attention over ``phi(q)``, ``phi(k)``; subclasses define :meth:`features`."""

    def __init__(self, *, form: str = "chunked", chunk: int = 16, feature_dim: int, **parts: Any):
        super().__init__(**parts)
        self.form, self.chunk, self.feature_dim = form, chunk, feature_dim

    @classmethod
    def builder(cls, form: str):
        """The ``build`` a plugin registers for implementation ``form``."""
        def build(args: Any, ctx: Any) -> "LinearizedAttention":
            return cls.from_args(args, ctx, form=form)
        return build

    @classmethod
    def from_args(cls, args: Any, ctx: Any, form: str = "chunked") -> "LinearizedAttention":
        return cls(**cls.projections(args, ctx), form=form, chunk=args.chunk,
                   feature_dim=args.feature_size(ctx.dims), **cls.extra(args, ctx))

    @classmethod
    def extra(cls, args: Any, ctx: Any) -> dict[str, Any]:
        """Kind-specific constructor arguments."""
        return {}

    def features(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor) -> tuple[Tensor, Tensor]:
        """``phi(q)`` ``(B, H, T, F)``, ``phi(k)`` ``(B, H, S, F)``; ``*_pos`` the slots ``(T,)``, ``(S,)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state

    def new_state(self, batch: int, capacity: int, *, device: Any = None,
                  dtype: torch.dtype = torch.float32) -> RecurrentState:
        return RecurrentState(batch, self.heads, self.feature_dim, self.head_dim,
                              device=device, dtype=dtype)

    # ---------------------------------------------------------------- forward

    def _causal(self, qf: Tensor, kf: Tensor, v: Tensor, state=None):
        if self.form == "recurrent":
            return forms.recurrent(qf, kf, v, state)
        return forms.chunked(qf, kf, v, state, chunk=self.chunk)

    @staticmethod
    def _restricted(mask: AttentionMask) -> bool:
        """A mask beyond causality and padding (patterns, packed documents)."""
        return bool(mask.patterns) or mask.q_documents is not None

    @staticmethod
    def _unsupported_mask(mask: AttentionMask) -> None:
        if mask.patterns:  # documents can't reach a decode step (the boundary refuses them)
            raise ValueError("linearized attention decodes with a running sum over every "
                             "past key: a mask pattern can't restrict it (run without a "
                             "cache, where the pattern is applied exactly)")

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache: Any = None, state=None) -> Tensor:
        if memory is not None or cache is None:
            return super().forward(x, memory, mask=mask, position=position, cache=cache,
                                   state=state)
        # Decoding: this step's keys update the recurrent state; nothing else is kept.
        self._unsupported_mask(mask)
        B, T, _ = x.shape
        q, k, v = self.self_projections(x, position)  # (B, H, T, hd), (B, H_kv, T, hd)
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, T, hd)
        slots = mask.q_slots if mask.q_slots is not None else cache_slots(T, x.device)
        qf, kf = self.features(q, k, slots, slots)  # (B, H, T, F)
        if mask.key_padding is not None:
            real = mask.key_padding[:, slots]  # (B, T)
            kf = kf * real[:, None, :, None].to(kf.dtype)
        work = qf.dtype
        S0, z0 = cache.read()
        if mask.causal:
            y, S, z = self._causal(qf, kf, v.to(work), (S0.to(work), z0.to(work)))
        else:  # a bidirectional stack decoding: every query sees the whole state
            S = S0.to(work) + torch.einsum("bhtf,bhtd->bhfd", kf, v.to(work))
            z = z0.to(work) + kf.sum(2)
            y = torch.einsum("bhtf,bhfd->bhtd", qf, S) / (
                torch.einsum("bhtf,bhf->bht", qf, z)[..., None] + forms.EPS)
        cache.write(S, z)
        y = y.to(x.dtype)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask: AttentionMask, position,
               state) -> Tensor:
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        T, S = q.shape[2], k.shape[2]
        qf, kf = self.features(q, k, torch.arange(T, device=q.device),
                               torch.arange(S, device=q.device))
        if mask.key_padding is not None:
            kf = kf * mask.key_padding[:, None, :, None].to(kf.dtype)  # padded keys: nothing
        v = v.to(qf.dtype)
        if self._restricted(mask):  # documents or patterns: the exact T x S form
            allowed = mask.dense(T, S, device=q.device, heads=self.heads)  # (B|1, H|1, T, S)
            y = forms.masked(qf, kf, v, allowed)
        elif mask.causal and not mask.cross:
            y = self._causal(qf, kf, v)[0]
        else:
            y = forms.bidirectional(qf, kf, v)
        return y.to(q.dtype)  # (B, H, T, hd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, features={self.feature_dim}, form={self.form}"


def cache_slots(T: int, device: Any) -> Tensor:
    return torch.arange(T, device=device)
