"""Rotary position embedding, RoPE (Su et al. 2021, https://arxiv.org/abs/2104.09864).

Queries and keys are rotated by position-dependent angles, so q_m . k_n
depends on m and n only through m - n. Hugging Face Llama convention
(``rotate_half``): dimension i is paired with i + d/2 (not 2i with 2i+1),
cos/sin ``(T, d)`` with the d/2 frequencies repeated twice::

    inv_freq = 1 / theta^(2i / d),  angles = pos * inv_freq
    q' = q * cos + rotate_half(q) * sin,  rotate_half([x1, x2]) = [-x2, x1]

``fraction`` < 1 rotates only the first ``fraction * head_dim`` dimensions
(GPT-NeoX / GPT-J ``rotary_pct``, HF ``partial_rotary_factor``) and passes
the rest through. No parameters.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs
from txdsl.sdk.positions import apply_rotary, rotate_half  # noqa: F401  (rotate_half: re-export)

from .common import head_dim_of


class RopeArgs(PositionArgs):
    """Rotary position embedding (Su et al. 2021), Llama's rotate_half convention."""

    acts: ClassVar = "qk"
    theta: float = Field(default=10000.0, gt=1.0)
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)  # share of head_dim rotated

    def rotary_dim(self, dims: Dims) -> int:
        return int(head_dim_of(dims, "rope") * self.fraction)

    def check(self, dims: Dims) -> None:
        hd, rot = head_dim_of(dims, "rope"), self.rotary_dim(dims)
        if hd % 2:
            raise ArgError(f"rope needs an even head_dim, got {hd}",
                           hint="dimensions are rotated in pairs")
        if rot == 0 or rot % 2:
            raise ArgError(f"rope rotates fraction ({self.fraction}) * head_dim ({hd}) = {rot} "
                           "dimensions, which must be even and positive", arg="fraction")


class RotaryPositions(nn.Module):
    acts = "qk"

    def __init__(self, *, rotary_dim: int, theta: float = 10000.0):
        super().__init__()
        if rotary_dim % 2:
            raise ValueError(f"rotary_dim ({rotary_dim}) must be even")
        self.rotary_dim, self.theta = rotary_dim, theta
        inv_freq = 1.0 / theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @classmethod
    def from_args(cls, args: RopeArgs, ctx: BuildContext) -> "RotaryPositions":
        args.check(ctx.dims)
        return cls(rotary_dim=args.rotary_dim(ctx.dims), theta=args.theta)

    def cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Positions ``(..., T)`` -> cos, sin ``(..., T, rotary_dim)``, computed in float32.

        The stack calls this once per forward with ``(B|1, T)`` positions."""
        angles = positions.to(torch.float32)[..., None] * self.inv_freq.float()  # (..., T, rot/2)
        emb = torch.cat((angles, angles), dim=-1)  # (..., T, rot)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def rotate(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate ``(B, H, T, hd)`` queries and keys at ``positions`` ``(T,)`` or ``(B, T)``."""
        cos, sin = self.cos_sin(positions, q.dtype)  # (T, rot) or (B, T, rot)
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, rot): broadcast over heads
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.rotate(q, k, positions)

    def extra_repr(self) -> str:
        return f"rotary_dim={self.rotary_dim}, theta={self.theta:g}"
