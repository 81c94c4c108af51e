"""``full`` attention through ``torch.nn.functional.scaled_dot_product_attention``.

PyTorch picks a fused kernel (FlashAttention, Dao et al. 2022,
https://arxiv.org/abs/2205.14135; memory-efficient; or the C++ math path on
CPU) for the same exact computation as :mod:`.reference`. The mask goes in as:

- nothing, when every key is visible;
- ``is_causal=True``, when the only constraint is causality and T == S (the
  fused kernels' fast path; SDPA's causal mask is top-left aligned, so with a
  KV cache (T < S) the causal mask is passed explicitly instead);
- otherwise one float ``attn_mask`` ``(B|1, H|1, T, S)``: the position bias
  with masked keys set to the dtype's min (finite, so a fully masked query
  row gives uniform weights, not NaN, exactly as the reference does).

Grouped-query attention uses SDPA's ``enable_gqa`` (torch >= 2.5) or repeats
the key/value heads on older versions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import AttentionMask

from .full import MultiHeadAttention, masked_fill_value, repeat_kv

_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
_HAS_GQA = _TORCH >= (2, 5)


class SDPAAttention(MultiHeadAttention):
    """Exact softmax attention via PyTorch's fused SDPA kernels (impl ``sdpa``)."""

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask,
                bias: Tensor | None) -> Tensor:
        T, S = q.shape[2], k.shape[2]
        attn_mask, is_causal = None, False
        if bias is None:
            if mask.causal and mask.key_padding is None and T == S:
                is_causal = True  # the fused kernels' fast path
            else:
                attn_mask = mask.additive(T, S, q.dtype, device=q.device)  # (B|1, 1, T, S) or None
        else:
            attn_mask = bias.to(q.dtype)  # (1|B, H, T, S)
            allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool or None
            if allowed is not None:  # masked_fill, not +min: bias + min could reach -inf
                attn_mask = attn_mask.masked_fill(~allowed, masked_fill_value(q.dtype))

        groups = self.heads // self.kv_heads
        extra = {}
        if groups > 1 and _HAS_GQA:
            extra["enable_gqa"] = True
        elif groups > 1:
            k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0, **extra)  # (B, H, T, hd)
