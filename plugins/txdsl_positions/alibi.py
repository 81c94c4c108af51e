"""ALiBi, attention with linear biases (Press et al. 2022, https://arxiv.org/abs/2108.12409).

No position embeddings; each head h adds ``-m_h * distance`` to its scores,
with slopes m_h a geometric sequence: for n heads (a power of two),
m_h = 2^(-8h/n), h = 1..n. Other head counts take the slopes of the nearest
lower power of two, then every other slope of the next power of two (the
paper's ``get_slopes``; BLOOM's / HF's ``build_alibi_tensor`` do the same).

The bias here is the symmetric form ``-m_h * |i - j|``, valid for encoders
too. Under a causal mask it equals the paper's ``m_h * (j - i)`` and BLOOM's
``m_h * j`` up to a constant per query row, which softmax ignores.
No parameters.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, PositionArgs

from .common import heads_of


class AlibiArgs(PositionArgs):
    """Linear distance penalties per head on the attention scores (Press et al. 2022)."""

    acts: ClassVar = "bias"

    def check(self, dims: Dims) -> None:
        heads_of(dims, "alibi")


def alibi_slopes(heads: int) -> list[float]:
    """The paper's per-head slopes (ofirpress/attention_with_linear_biases, ``get_slopes``)."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))  # = 2^(-8/n)
        return [start * start ** i for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_2(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


class AlibiPositions(nn.Module):
    acts = "bias"

    def __init__(self, *, heads: int):
        super().__init__()
        self.heads = heads
        self.register_buffer("slopes", torch.tensor(alibi_slopes(heads), dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_args(cls, args: AlibiArgs, ctx: BuildContext) -> "AlibiPositions":
        args.check(ctx.dims)
        return cls(heads=heads_of(ctx.dims, "alibi"))

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """Query ``(B|1, T)`` and key ``(B|1, S)`` positions (or ``(T,)``/``(S,)``) ->
        ``(B|1, H, T, S)`` float32 bias."""
        q = q_positions if q_positions.dim() == 2 else q_positions[None]
        k = k_positions if k_positions.dim() == 2 else k_positions[None]
        distance = (q[:, :, None] - k[:, None, :]).abs().to(torch.float32)  # (B|1, T, S)
        return -self.slopes.float()[None, :, None, None] * distance[:, None]  # (B|1, H, T, S)

    def extra_repr(self) -> str:
        return f"heads={self.heads}"
