"""Sinusoidal absolute positions (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762, §3.5).

    PE(pos, 2i)   = sin(pos / base^(2i / width))
    PE(pos, 2i+1) = cos(pos / base^(2i / width))

Added to the token embeddings. No parameters: the table is computed on the
fly, or, with ``max_len``, precomputed once into a non-persistent buffer
(as the PyTorch tutorial's ``PositionalEncoding``); neither is in the
``state_dict``. Values are float32; the caller casts.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs


class SinusoidalArgs(PositionArgs):
    """Fixed sin/cos position vectors added to the embeddings (Vaswani et al. 2017)."""

    acts: ClassVar = "embedding"
    max_len: PositiveInt | None = None  # precompute this many rows; None: compute per call
    base: float = Field(default=10000.0, gt=1.0, description="the base of the wavelengths, "
                        "PE(pos, 2i) = sin(pos / base^(2i / width)); 10000 from Vaswani et al. "
                        "2017, section 3.5 (wavelengths 2 pi .. 10000 * 2 pi)")

    def check(self, dims: Dims) -> None:
        if dims.width % 2:
            raise ArgError(f"sinusoidal positions need an even width, got {dims.width}",
                           hint="sin and cos fill alternate dimensions")
        if self.max_len is not None and dims.context is not None and dims.context > self.max_len:
            raise ArgError(f"max_len ({self.max_len}) is shorter than the context ({dims.context})",
                           arg="max_len", hint="raise max_len, or drop it to compute on the fly")


class SinusoidalPositions(nn.Module):
    acts = "embedding"

    def __init__(self, *, width: int, base: float = 10000.0, max_len: int | None = None):
        super().__init__()
        if width % 2:
            raise ValueError(f"width ({width}) must be even")
        self.width, self.base, self.max_len = width, base, max_len
        # 1 / base^(2i/width), i = 0 .. width/2 - 1
        inv_freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(base) / width))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        if max_len is not None:
            self.register_buffer("table", self._encode(torch.arange(max_len)), persistent=False)
        else:
            self.table = None

    @classmethod
    def from_args(cls, args: SinusoidalArgs, ctx: BuildContext) -> "SinusoidalPositions":
        args.check(ctx.dims)
        return cls(width=ctx.dims.width, base=args.base, max_len=args.max_len)

    def _encode(self, position_ids: Tensor) -> Tensor:  # (...) -> (..., width)
        angles = position_ids.to(torch.float32)[..., None] * self.inv_freq.float()  # (..., width/2)
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (..., width/2, 2): sin even, cos odd
        return pe.flatten(-2)

    def position_ids(self, attention_mask: Tensor | None, T: int, past: int = 0) -> Tensor:
        """``(1, T)`` positions ``past .. past+T-1`` (as :class:`LearnedPositions` without
        ``padding_idx``; every embedding scheme answers this, so the runtime need not ask)."""
        return (torch.arange(T, device=self.inv_freq.device) + past)[None]

    def forward(self, position_ids: Tensor) -> Tensor:  # (B, T) -> (B, T, width)
        if self.table is not None:
            return self.table[position_ids]
        return self._encode(position_ids)

    def extra_repr(self) -> str:
        return f"width={self.width}, base={self.base:g}, max_len={self.max_len}"
