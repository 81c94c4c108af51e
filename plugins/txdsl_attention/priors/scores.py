"""Softmax attention that forms its scores: the shared base of the prior and multi-head kinds.

Every kind in :mod:`txdsl_attention.priors` and :mod:`txdsl_attention.multihead`
changes one step of the reference computation

    scores = q k^T * scale (+ position bias)   (B, H, T, S)
    scores = prior(scores)                     # a locality prior, RealFormer's residual
    weights = softmax(masked(scores))
    weights = reweight(weights)                # an adaptive span's soft mask
    out = weights v                            (B, H, T, hd)

so :class:`ScoresAttention` writes that out once (float32 for half inputs)
and a kind overrides the hook it needs. These kinds register only this
implementation (``reference``): none is served by a kernel that never forms
the score matrix (SDPA, FlexAttention), so the kernel plan has one candidate.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from txdsl.sdk import ArgError, AttentionArgs
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv


def query_slots(mask: Any, T: int, S: int, device: Any) -> Tensor:
    """``(T,)`` the queries' slots among the ``S`` keys (the last ``T`` unless the mask says)."""
    if mask.q_slots is not None:
        return mask.q_slots.to(device)
    return torch.arange(S - T, S, device=device)


def distance(mask: Any, T: int, S: int, device: Any) -> Tensor:
    """``(T, S)`` query slot minus key slot (positive: the key is in the past)."""
    return (query_slots(mask, T, S, device)[:, None] - torch.arange(S, device=device)[None, :])


def no_gqa(args: AttentionArgs, kind: str, why: str) -> None:
    """Refuse ``kv_heads`` for a kind whose paper has no grouped-query form."""
    if args.kv_heads is not None and args.kv_heads != args.heads:
        raise ArgError(f"{kind} has no grouped-query form ({why}): kv_heads ({args.kv_heads}) "
                       f"must equal heads ({args.heads})", arg="kv_heads", hint="drop kv_heads")


class ScoresArgs(AttentionArgs):
    """Base of the score-forming kinds: bias positions only (their kernels add them)."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    forms_scores: ClassVar[bool] = True  # hands its pre-softmax scores on (StackState.scores)


class ScoresAttention(Attention):
    """Reference softmax attention with hooks on the scores and on the weights."""

    def prior(self, scores: Tensor, *, mask: Any, state: Any) -> Tensor:
        """``(B, H, T, S)`` pre-softmax scores -> the same with this kind's prior added."""
        return scores

    def allowed(self, mask: Any, T: int, S: int, device: Any) -> Tensor | None:
        """``(B|1, H|1, T, S)`` bool: which keys each query may see (``None``: all)."""
        return mask.dense(T, S, device=device)

    def reweight(self, weights: Tensor, *, mask: Any, state: Any) -> Tensor:
        """``(B, H, T, S)`` softmax weights -> the weights applied to the values."""
        return weights

    def values(self, weights: Tensor, v: Tensor) -> Tensor:
        """``(B, H, T, S)`` weights, ``(B, H, S, hd)`` values -> ``(B, H, T, hd)``."""
        return torch.einsum("bhts,bhsd->bhtd", weights, v)

    def raw_scores(self, q: Tensor, k: Tensor) -> Tensor:
        """``(B, H, T, hd)`` queries, ``(B, H, S, hd)`` keys -> ``(B, H, T, S)`` scaled scores."""
        return torch.einsum("bhtd,bhsd->bhts", q, k) * self.scale

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        groups = self.heads // self.kv_heads
        dtype = q.dtype
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        q, k, v = q.to(work), repeat_kv(k, groups).to(work), repeat_kv(v, groups).to(work)
        T, S = q.shape[2], k.shape[2]
        scores = self.raw_scores(q, k)  # (B, H, T, S)
        if position is not None and position.bias is not None:
            scores = scores + position.bias.to(work)
        scores = self.prior(scores, mask=mask, state=state)
        if state is not None and not mask.cross:  # for a residual-scores layer after this one
            state.scores = scores
        allowed = self.allowed(mask, T, S, q.device)  # (B|1, H|1, T, S) or None
        if allowed is not None:
            scores = scores.masked_fill(~allowed, masked_fill_value(work))
        weights = self.reweight(torch.softmax(scores, dim=-1), mask=mask, state=state)
        weights = torch.nn.functional.dropout(weights, p=self.dropout, training=self.training)
        return self.values(weights, v).to(dtype)  # (B, H, T, hd)
