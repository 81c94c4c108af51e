"""``full`` attention, reference implementation: the naive definition, written out.

    scores  = Q K^T * scale + bias          # (B, H, T, S)
    scores  = where(allowed, scores, min)   # masked keys get the dtype's min
    weights = softmax(scores)               # in float32 for bf16/fp16 inputs
    out     = dropout(weights) V

This is what ``txdsl verify`` and the SDPA/Triton kernels are compared with;
it favours being obviously right over being fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import AttentionMask

from .full import MultiHeadAttention, masked_fill_value, repeat_kv


class ReferenceAttention(MultiHeadAttention):
    """Exact softmax attention with explicit matmuls (impl ``reference``)."""

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask,
                bias: Tensor | None) -> Tensor:
        T, S = q.shape[2], k.shape[2]
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        dtype = q.dtype
        # Low-precision inputs: take scores and softmax in float32, as HF does.
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        scores = torch.einsum("bhtd,bhsd->bhts", q.to(work), k.to(work)) * self.scale  # (B, H, T, S)
        if bias is not None:
            scores = scores + bias.to(work)
        allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool or None
        if allowed is not None:
            scores = scores.masked_fill(~allowed, masked_fill_value(work))
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return torch.einsum("bhts,bhsd->bhtd", weights, v.to(work)).to(dtype)  # (B, H, T, hd)
