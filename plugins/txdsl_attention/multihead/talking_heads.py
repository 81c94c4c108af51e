"""Talking-heads attention (Shazeer, Lan, Cheng, Ding, Hou 2020, https://arxiv.org/abs/2003.02436).

Learned linear maps across the heads dimension, one on the logits before the
softmax and one on the weights after it:

    J = Q K^T / sqrt(d_k)            (B, H, T, S)
    L = einsum("bhts,hg->bgts", J, P_l)      # before the softmax and the mask
    W = einsum("bhts,hg->bgts", softmax(L + mask), P_w)  # after the softmax
    out_g = W_g V_g

Both maps are ``(heads, heads)`` here (the paper allows other head counts for
the logits and the weights) and start as the identity, where the layer is
full attention. The mask is applied after mixing the logits, so a masked key
never leaks into another head; mixing the weights keeps a masked key's zero.
Grouped-query attention keeps working: keys and values are repeated per
query head before mixing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from txdsl.sdk import Dims

from ..priors.scores import ScoresArgs, ScoresAttention


class TalkingHeadsArgs(ScoresArgs):
    """Talking-heads attention (Shazeer et al. 2020): (heads, heads) mixing of the logits
    (before softmax) and of the weights (after it), both initialised to the identity."""

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + 2 * self.heads * self.heads

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return super().flops_per_token(dims, seq_len) + 2 * 2 * self.heads ** 2 * seq_len


class TalkingHeadsAttention(ScoresAttention):
    """Softmax attention whose heads talk through two learned (H, H) mixing matrices."""

    def __init__(self, **parts):
        super().__init__(**parts)
        self.logits_mix = nn.Parameter(torch.eye(self.heads))  # P_l (H_in, H_out)
        self.weights_mix = nn.Parameter(torch.eye(self.heads))  # P_w (H_in, H_out)

    def prior(self, scores: Tensor, *, mask, state) -> Tensor:
        return torch.einsum("bhts,hg->bgts", scores, self.logits_mix.to(scores.dtype))

    def reweight(self, weights: Tensor, *, mask, state) -> Tensor:
        return torch.einsum("bhts,hg->bgts", weights, self.weights_mix.to(weights.dtype))
