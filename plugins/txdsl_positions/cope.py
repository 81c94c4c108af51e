"""Contextual position encoding (CoPE, Golovneva et al. 2024), acting on scores.

Positions are counted by the content: for query i each key j gets a gate
``g_ij = sigmoid(a_ij)`` from the (scaled, masked) attention logit, and its position
is the number of gated keys between it and the query, a reverse cumulative sum::

    p_ij = sum_{t=j}^{i} g_it                   (masked keys gate 0)
    e(p) = (p - floor p) e[ceil p] + (ceil p - p) e[floor p]   (p clamped to npos_max - 1)
    a'_ij = a_ij + q_i . e(p_ij)

as the paper's reference code (``CoPE.forward``: the term ``q . e`` is computed for
the ``npos_max`` integer positions and interpolated). ``e`` ``(npos_max, head_dim)``
is shared by the heads; each layer has its own (``per_layer``, the default: the
reference code's ``CoPE`` module lives in each attention layer), ``(L, npos_max,
head_dim)``, layer ``i`` reading row ``i``; ``per_layer: false`` shares one. In a causal stack (the paper's setting)
p counts back from the query; in a bidirectional one, every unmasked key after j
counts too. The ``relative`` attention adds the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, PositionArgs

from .common import head_dim_of


class CopeArgs(PositionArgs):
    """Contextual position encoding, CoPE (Golovneva, Wang, Weston & Sukhbaatar 2024,
    https://arxiv.org/abs/2405.18719): positions count the keys whose gate sigmoid(q . k)
    fires; a learned ``head_dim`` vector per integer position below ``max_positions``,
    interpolated between them; shared by the heads; one table per layer (``per_layer``)
    or one for the stack."""

    acts: ClassVar = "scores"
    attentions: ClassVar[frozenset[str]] = frozenset({"relative"})
    max_positions: PositiveInt = Field(default=64, description="npos_max: the number of "
                                       "position embeddings; counted positions are clamped "
                                       "to npos_max - 1")

    per_layer: bool = Field(default=True, description="one table per layer of the stack (as "
                            "the reference code: a CoPE module in every attention layer); "
                            "false: one table shared by the layers")

    def check(self, dims: Dims) -> None:
        head_dim_of(dims, "cope")

    def param_count(self, dims: Dims) -> int:
        tables = dims.layers or 1 if self.per_layer else 1
        return tables * self.max_positions * head_dim_of(dims, "cope")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        heads = dims.heads or 1  # q . e for every integer position, then gates and sums
        return heads * (2 * self.max_positions * head_dim_of(dims, "cope") + 6 * seq_len)


@dataclass(eq=False)
class CopeTerms:
    """The position embeddings ``(npos_max, hd)`` for one forward."""

    embeddings: Tensor  # (npos_max, hd); per layer (L, npos_max, hd) until for_layer

    def for_layer(self, i: int) -> "CopeTerms":
        """Layer ``i``'s table (per-layer tables; a shared one: these terms)."""
        return self if self.embeddings.dim() == 2 else CopeTerms(self.embeddings[i])

    def logits(self, q: Tensor, scores: Tensor, allowed: Tensor | None, scale: float) -> Tensor:
        """q ``(B, H, T, hd)``, the scaled logits ``(B, H, T, S)`` -> the CoPE term."""
        if self.embeddings.dim() == 3:
            raise ValueError("per-layer cope tables: take a layer's terms with for_layer(i) "
                             "(the stack does)")
        gates = torch.sigmoid(scores)  # (B, H, T, S)
        if allowed is not None:
            gates = gates * allowed.to(gates.dtype)  # masked keys don't count
        pos = gates.flip(-1).cumsum(-1).flip(-1)  # p_ij = sum_{t >= j} g_it
        pos = pos.clamp(max=self.embeddings.shape[0] - 1)
        ceil, floor = pos.ceil().long(), pos.floor().long()
        per_position = q @ self.embeddings.to(q.dtype).T  # (B, H, T, npos_max)
        w = pos - floor
        return (per_position.gather(-1, ceil) * w
                + per_position.gather(-1, floor) * (1 - w))  # (B, H, T, S)

    def value_term(self, weights: Tensor) -> None:
        return None


class CopePositions(nn.Module):
    acts = "scores"

    def __init__(self, *, embeddings: nn.Parameter):
        super().__init__()
        self.embeddings = embeddings  # (npos_max, hd)

    @classmethod
    def from_args(cls, args: CopeArgs, ctx: BuildContext) -> "CopePositions":
        args.check(ctx.dims)
        hd = head_dim_of(ctx.dims, "cope")
        # The reference initialises with zeros; small random values make the term visible.
        shape = ((ctx.dims.layers or 1, args.max_positions, hd) if args.per_layer
                 else (args.max_positions, hd))
        return cls(embeddings=nn.Parameter(torch.randn(shape) * hd ** -0.5))

    def scores(self, q_positions: Tensor, k_positions: Tensor, dtype: torch.dtype) -> CopeTerms:
        return CopeTerms(embeddings=self.embeddings)

    def extra_repr(self) -> str:
        layers = f", per_layer={self.embeddings.shape[0]}" if self.embeddings.dim() == 3 else ""
        return f"max_positions={self.embeddings.shape[-2]}{layers}"
