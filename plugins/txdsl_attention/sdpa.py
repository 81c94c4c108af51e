"""``full`` attention through ``torch.nn.functional.scaled_dot_product_attention``.

PyTorch picks a fused kernel (FlashAttention, Dao et al. 2022,
https://arxiv.org/abs/2205.14135; memory-efficient; or the C++ math path on
CPU) for the same exact computation as the reference. The mask goes in as:

- nothing, when every key is visible;
- ``is_causal=True``, when the only constraint is causality with queries
  aligned to keys (the fused kernels' fast path);
- otherwise one float ``attn_mask`` ``(B|1, H|1, T, S)``: the mask's additive
  lowering (made once per stack forward and shared by the layers), plus the
  position bias, masked keys at the dtype's min (finite, so a fully masked
  query row gives uniform weights, not NaN, exactly as the reference does).

Grouped-query attention uses SDPA's ``enable_gqa``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import Attention, masked_fill_value


class SDPAAttention(Attention):
    """Exact softmax attention via PyTorch's fused SDPA kernels (impl ``sdpa``)."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        T, S = q.shape[2], k.shape[2]
        bias = position.bias if position is not None else None
        attn_mask, is_causal = None, False
        if bias is None:
            if mask.is_plain_causal(T, S):
                is_causal = True
            else:
                attn_mask = mask.additive(T, S, q.dtype, device=q.device)  # shared by the layers
        else:
            attn_mask = bias.to(q.dtype)  # (B|1, H, T, S)
            allowed = mask.dense(T, S, device=q.device)
            if allowed is not None:  # masked_fill, not +min: bias + min could reach -inf
                attn_mask = attn_mask.masked_fill(~allowed, masked_fill_value(q.dtype))
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.heads != self.kv_heads)  # (B, H, T, hd)
