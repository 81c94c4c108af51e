"""Shaw et al.'s relative position representations, acting on scores (and values).

For query i and key j the clipped distance is ``clip(j - i, k) = max(-k, min(k, j - i))``
and, with ``w^K``, ``w^V`` learned ``(2k + 1, head_dim)`` tables (paper eq. 3-5)::

    e_ij = q_i . (k_j + w^K_clip(j-i)) / sqrt(d_z)
    z_i  = sum_j a_ij (v_j + w^V_clip(j-i))

The tables are shared by the heads (as in the paper, section 3.3); each layer has its
own (``per_layer``, the default: the paper's tensor2tensor code and Hugging Face's
``relative_key`` give every attention layer its embeddings), ``(L, 2k + 1, head_dim)``,
layer ``i`` reading row ``i`` (:meth:`ShawTerms.for_layer`); ``per_layer: false``
shares one pair by the stack's layers. Positions are
the rows' own ``(B|1, T)`` / ``(B|1, S)``, so decoding with a cache and left padding
see the same distances as a full forward. The ``relative`` attention adds the terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, PositionArgs

from .common import head_dim_of


class ShawArgs(PositionArgs):
    """Relative position representations (Shaw, Uszkoreit & Vaswani 2018,
    https://arxiv.org/abs/1803.02155): learned ``head_dim`` vectors per clipped
    distance in [-max_distance, max_distance], for the keys (q_i . a^K_ij) and the
    values (sum_j a_ij a^V_ij), shared by the heads; one pair of tables per layer
    (``per_layer``) or one for the stack."""

    acts: ClassVar = "scores"
    attentions: ClassVar[frozenset[str]] = frozenset({"relative"})
    max_distance: NonNegativeInt = Field(default=16, description="the clipping distance k: "
                                         "distances beyond +-k share the edge embedding "
                                         "(0: one embedding, no relative information)")
    values: bool = Field(default=True, description="also the value term a^V (paper eq. 3); "
                         "false: keys only")

    per_layer: bool = Field(default=True, description="one pair of tables per layer of the "
                            "stack (as the paper's code: every attention layer owns its "
                            "embeddings); false: one pair shared by the layers")

    def check(self, dims: Dims) -> None:
        head_dim_of(dims, "shaw")

    def param_count(self, dims: Dims) -> int:
        tables = (2 if self.values else 1) * (dims.layers or 1 if self.per_layer else 1)
        return tables * (2 * self.max_distance + 1) * head_dim_of(dims, "shaw")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        # per head: q . w^K over the 2k+1 rows, and the bucketed weights times w^V
        rows = 2 * self.max_distance + 1
        hd = head_dim_of(dims, "shaw")
        heads = dims.heads or 1
        return (2 if self.values else 1) * 2 * heads * rows * hd


@dataclass(eq=False)
class ShawTerms:
    """One forward's clipped distances ``index`` ``(B|1, T, S)`` in [0, 2k] and the tables."""

    index: Tensor
    keys: Tensor  # (2k + 1, hd); per layer (L, 2k + 1, hd) until for_layer
    values: Tensor | None  # (2k + 1, hd) or None; per layer (L, 2k + 1, hd)

    def for_layer(self, i: int) -> "ShawTerms":
        """Layer ``i``'s tables (per-layer tables; shared ones: these terms)."""
        if self.keys.dim() == 2:
            return self
        return ShawTerms(self.index, self.keys[i],
                         self.values[i] if self.values is not None else None)

    def logits(self, q: Tensor, scores: Tensor, allowed: Tensor | None, scale: float) -> Tensor:
        """q ``(B, H, T, hd)`` -> the term ``q_i . w^K_clip(j-i) * scale`` ``(B, H, T, S)``."""
        B, H, T, _ = q.shape
        if self.keys.dim() == 3:
            raise ValueError("per-layer shaw tables: take a layer's terms with for_layer(i) "
                             "(the stack does)")
        per_row = q @ self.keys.to(q.dtype).T  # (B, H, T, 2k+1)
        index = self.index[:, None].expand(B, H, T, self.index.shape[-1])  # (B, H, T, S)
        return torch.gather(per_row, -1, index) * scale

    def value_term(self, weights: Tensor) -> Tensor | None:
        """weights ``(B, H, T, S)`` -> ``sum_j a_ij w^V_clip(j-i)`` ``(B, H, T, hd)``."""
        if self.values is None:
            return None
        B, H, T, S = weights.shape
        index = self.index[:, None].expand(B, H, T, S)
        per_row = weights.new_zeros(B, H, T, self.values.shape[0])
        per_row = per_row.scatter_add(-1, index, weights)  # (B, H, T, 2k+1): weight per distance
        return per_row @ self.values.to(weights.dtype)


class ShawPositions(nn.Module):
    acts = "scores"

    def __init__(self, *, keys: nn.Parameter, values: nn.Parameter | None, max_distance: int):
        super().__init__()
        self.keys = keys  # (2k + 1, hd): row r is distance r - k
        self.values = values
        self.max_distance = max_distance

    @classmethod
    def from_args(cls, args: ShawArgs, ctx: BuildContext) -> "ShawPositions":
        args.check(ctx.dims)
        rows, hd = 2 * args.max_distance + 1, head_dim_of(ctx.dims, "shaw")
        shape = (ctx.dims.layers or 1, rows, hd) if args.per_layer else (rows, hd)
        keys = nn.Parameter(torch.randn(shape) * hd ** -0.5)
        values = nn.Parameter(torch.randn(shape) * hd ** -0.5) if args.values else None
        return cls(keys=keys, values=values, max_distance=args.max_distance)

    def scores(self, q_positions: Tensor, k_positions: Tensor, dtype: torch.dtype) -> ShawTerms:
        """Query ``(B|1, T)`` and key ``(B|1, S)`` positions -> :class:`ShawTerms`."""
        device = self.keys.device
        distance = k_positions.to(device)[:, None, :] - q_positions.to(device)[:, :, None]
        k = self.max_distance
        index = distance.long().clamp(-k, k) + k  # (B|1, T, S)
        return ShawTerms(index=index, keys=self.keys, values=self.values)

    def extra_repr(self) -> str:
        layers = f", per_layer={self.keys.shape[0]}" if self.keys.dim() == 3 else ""
        return f"max_distance={self.max_distance}, values={self.values is not None}{layers}"
