"""``performer``: FAVOR+ attention (Choromanski et al. 2021, "Rethinking Attention with
Performers", https://arxiv.org/abs/2009.14794).

Positive orthogonal random features estimate the softmax kernel without bias:

    exp(q . k / sqrt(d)) = E_w[phi(q') phi(k')],  x' = x / d^(1/4),
    phi(x) = exp(W x - |x|^2 / 2) / sqrt(m),

``W`` ``(m, d)``: ``m = features`` rows drawn in orthogonal blocks (QR of a
Gaussian matrix, rows rescaled to chi-distributed norms: Lemma 1 / Sec. 2.4).
``W`` is a buffer drawn from ``seed`` at build (deterministic per build, saved
with the weights); :meth:`PerformerAttention.redraw_features` draws anew, and
``redraw: N`` does so every ``N`` training forwards. No data-dependent
stabiliser is needed: ``w . x - |x|^2 / 2 <= |w|^2 / 2`` for every ``x``, so a
per-build constant (:meth:`PerformerAttention.offset`, 0 for heads up to ~64)
keeps every feature finite; a constant cancels in the ratio, so the decode
state written at token 1 is still valid at token 10,000.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import Tensor

from txdsl.sdk.args import Dims

from .base import LinearizedArgs, LinearizedAttention


class PerformerArgs(LinearizedArgs):
    """Performer / FAVOR+ (Choromanski et al. 2021, https://arxiv.org/abs/2009.14794): softmax
    attention estimated with positive orthogonal random features."""

    features: PositiveInt = Field(default=64, description="m, the number of random features")
    redraw: NonNegativeInt = Field(default=0, description="redraw the features every N "
                                   "training forward passes (0: never)")
    seed: int = Field(default=0, description="seed of the random features drawn at build")

    def feature_size(self, dims: Dims) -> int:
        return self.features

    def feature_flops(self, dims: Dims) -> int:
        return 2 * 2 * self.heads * self.features * self.head_size(dims)  # W q' and W k'


EXP_MAX = 60.0  # exp(60) ~ 1e26: products of two such features stay finite in float32


def orthogonal_features(m: int, d: int, generator: torch.Generator) -> Tensor:
    """``(m, d)``: blocks of ``d`` orthogonal rows, each rescaled to a Gaussian row's norm."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator)
        q, _ = torch.linalg.qr(g)
        blocks.append(q.T)  # orthonormal rows
    w = torch.cat(blocks)[:m]  # (m, d)
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)  # chi(d)
    return w * norms


class PerformerAttention(LinearizedAttention):
    """FAVOR+ with ``features`` positive orthogonal random features per head (shared by heads)."""

    def __init__(self, *, redraw: int = 0, seed: int = 0, **kw):
        super().__init__(**kw)
        self.redraw, self.seed = redraw, seed
        self.draws = 0  # draws since the build: draw n uses seed + n (deterministic)
        self.register_buffer("projection", self.draw())
        self.calls = 0  # training forwards since the last draw

    @classmethod
    def extra(cls, args, ctx):
        return {"redraw": args.redraw, "seed": args.seed}

    def draw(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.draws)
        return orthogonal_features(self.feature_dim, self.head_dim, g)  # (m, hd)

    @torch.no_grad()
    def redraw_features(self) -> None:
        """Draw a new ``W``: draw ``n`` uses seed ``seed + 1000003 n``, so runs repeat."""
        self.draws += 1
        self.projection.copy_(self.draw().to(self.projection))
        self.calls = 0

    def forward(self, x, memory=None, **kw):
        if self.training and self.redraw:
            self.calls += 1
            if self.calls >= self.redraw:
                self.redraw_features()
        return super().forward(x, memory, **kw)

    def phi(self, x: Tensor) -> Tensor:
        x = x.float() * math.sqrt(self.scale)  # x' = x / d^(1/4) for the default scale
        wx = torch.einsum("bhtd,md->bhtm", x, self.projection.float())  # (B, H, T, m)
        exponent = wx - (x * x).sum(-1, keepdim=True) / 2  # <= |w|^2 / 2 for every x
        return torch.exp(exponent - self.offset()) / math.sqrt(self.feature_dim)

    def offset(self) -> Tensor:
        """A constant subtracted from every exponent so none exceeds ``EXP_MAX``: 0 (exact)
        unless some ``|w|^2 / 2`` does (large heads); it cancels in the ratio."""
        bound = self.projection.float().pow(2).sum(-1).amax() / 2
        return (bound - EXP_MAX).clamp_min(0).detach()

    def features(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor):
        return self.phi(q), self.phi(k)  # (B, H, T, m), (B, H, S, m)
