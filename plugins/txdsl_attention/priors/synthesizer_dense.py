"""Dense Synthesizer (Tay et al. 2021, https://arxiv.org/abs/2005.00743): weights from each
token alone.

    B_i = W_2 relu(W_1 x_i + b_1) + b_2        (H * max_len,) per token i
    out = softmax(B[:, :, :S] + mask) G(X)      (B, H, T, S) weights

``W_1`` ``d_model -> d_model`` is shared by the heads, ``W_2``
``d_model -> heads * max_len`` gives each head a row of scores over the
``max_len`` positions; column ``j`` is key slot ``j``.
"""

from __future__ import annotations

from torch import Tensor, nn

from txdsl.sdk import Dims
from txdsl.sdk.args import linear_params

from .synthetic import SynthesizerArgs, SynthesizerAttention


class SynthesizerDenseArgs(SynthesizerArgs):
    """Dense Synthesizer (Tay et al. 2021): per-token predicted attention weights."""

    def param_count(self, dims: Dims) -> int:
        d = dims.width
        return self.base_params(dims) + linear_params(d, d, True) \
            + linear_params(d, self.heads * self.max_len, True)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.param_count(dims) + 2 * self.heads * self.head_size(dims) * seq_len


class SynthesizerDenseAttention(SynthesizerAttention):
    """Attention weights predicted by a two-layer network from each query token."""

    def __init__(self, *, max_len: int, **parts):
        super().__init__(max_len=max_len, **parts)
        d = self.v_proj.in_features
        self.hidden = nn.Linear(d, d)  # W_1
        self.synth = nn.Linear(d, self.heads * max_len)  # W_2

    def logits(self, x: Tensor, slots: Tensor, S: int) -> Tensor:
        B, T, _ = x.shape
        b = self.synth(nn.functional.relu(self.hidden(x)))  # (B, T, H * max_len)
        return b.view(B, T, self.heads, self.max_len).transpose(1, 2)[..., :S]  # (B, H, T, S)
