"""``linear``: linear attention (Katharopoulos et al. 2020, "Transformers are RNNs",
https://arxiv.org/abs/2006.16236).

    out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j)),

``phi(x) = elu(x) + 1`` (the paper's choice), ``relu`` or ``softplus``:
non-negative maps chosen with ``feature_map``; causal over ``j <= i`` via prefix
sums, decoding with a constant-size recurrent state.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from .base import LinearizedArgs, LinearizedAttention

MAPS = {
    "elu": lambda x: F.elu(x) + 1,  # elu(x) + 1 > 0 (the paper's)
    "relu": F.relu,
    "softplus": F.softplus,
}


class LinearArgs(LinearizedArgs):
    """Linear attention (Katharopoulos et al. 2020, https://arxiv.org/abs/2006.16236):
    softmax replaced by a positive feature map, O(T) time, a constant-size decode state."""

    feature_map: Literal["elu", "relu", "softplus"] = Field(
        default="elu", description="phi: elu (elu(x) + 1, the paper's), relu, or softplus")


class LinearAttention(LinearizedAttention):
    """``phi(q) (phi(k)^T v)`` with an elementwise map; ``F = head_dim``."""

    def __init__(self, *, feature_map: str = "elu", **kw):
        super().__init__(**kw)
        self.feature_map = feature_map

    @classmethod
    def extra(cls, args, ctx):
        return {"feature_map": args.feature_map}

    def features(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor):
        phi = MAPS[self.feature_map]
        return phi(q.float()), phi(k.float())  # (B, H, T, hd), (B, H, S, hd)
