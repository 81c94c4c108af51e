"""DeBERTa's relative position embeddings and log buckets (He et al. 2021), acting on scores.

The stack's scheme owns ``rel_embeddings`` (``2 * span`` rows of d_model,
``span`` = ``buckets``, else ``max_relative_positions``, else the context)
and, for v3 (``norm: true``, HF ``norm_rel_ebd: layer_norm``), a LayerNorm
over them; every layer's ``disentangled`` attention projects the same rows.
Once per forward :meth:`DisentangledPositions.scores` gives the attention
what it needs: the bucketed relative distance ``delta(i, j)`` of query i to
key j, ``(B|1, T, S)``, and the (normed) embeddings ``(2 * span, d_model)``.

Buckets (HF ``make_log_bucket_position``): distances below ``buckets / 2``
are exact; beyond, ``sign * (mid + ceil(log(|d| / mid) / log((max - 1) /
mid) * (mid - 1)))`` with ``mid = buckets / 2`` and ``max`` the maximum
relative position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs


class DisentangledPositionArgs(PositionArgs):
    """DeBERTa relative position embeddings (He et al. 2021, https://arxiv.org/abs/2006.03654).

    As HF ``DebertaV2Encoder``: ``rel_embeddings`` = ``nn.Embedding(2 * buckets,
    d_model)`` with log-bucketed relative positions (``buckets`` > 0, v2/v3's
    ``position_buckets``), else ``2 * max_relative_positions`` rows (-1: the
    model's context, HF ``max_position_embeddings``); ``norm`` (v3's
    ``norm_rel_ebd: layer_norm``) adds a LayerNorm over them. Shared by all
    layers of the stack.
    """

    acts: ClassVar = "scores"
    buckets: int = Field(default=256, description="HF position_buckets: log-bucketed relative "
                         "positions in 2 * buckets rows; <= 0: no bucketing")
    max_relative_positions: int = Field(default=-1, description="the largest relative distance "
                                        "(the log buckets' end); < 1: the model's context")
    norm: bool = Field(default=True, description="a LayerNorm over the relative embeddings "
                       "(HF norm_rel_ebd: layer_norm, DeBERTa v3)")
    eps: float = Field(default=1e-7, description="that LayerNorm's epsilon")

    def max_position(self, dims: Dims) -> int:
        if self.max_relative_positions >= 1:
            return self.max_relative_positions
        if dims.context is None:
            raise ArgError("disentangled positions need max_relative_positions or the model's "
                           "context", arg="max_relative_positions",
                           hint="set max_relative_positions, or context in the model")
        return dims.context

    def span(self, dims: Dims) -> int:
        return self.buckets if self.buckets > 0 else self.max_position(dims)

    def check(self, dims: Dims) -> None:
        # Distances up to buckets / 2 are exact; with a maximum position at or below that
        # (a short context) the log branch is never taken, as in HF.
        self.max_position(dims)

    def param_count(self, dims: Dims) -> int:
        return 2 * self.span(dims) * dims.d_model + (2 * dims.d_model if self.norm else 0)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 0


def log_bucket_position(relative: Tensor, buckets: int, max_position: int) -> Tensor:
    """HF ``make_log_bucket_position``: ``(..)`` integer distances -> ``(..)`` buckets."""
    sign = torch.sign(relative)
    mid = buckets // 2
    near = (relative < mid) & (relative > -mid)
    distance = torch.where(near, torch.full_like(relative, mid - 1), relative.abs()).float()
    log_pos = torch.ceil(torch.log(distance / mid)
                         / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(distance <= mid, relative.float(), log_pos * sign).long()


@dataclass(eq=False)
class RelativeScores:
    """What every disentangled layer reads: ``delta`` ``(B|1, T, S)`` bucketed ``i - j``
    and ``embeddings`` ``(2 * span, d_model)``; row ``delta + span`` (clamped) is the
    embedding of a query-key pair."""

    delta: Tensor
    embeddings: Tensor
    span: int


class DisentangledPositions(nn.Module):
    acts = "scores"

    def __init__(self, *, rel_embeddings: nn.Embedding, norm: nn.Module | None,
                 buckets: int, max_position: int):
        super().__init__()
        self.rel_embeddings = rel_embeddings  # (2 * span, d_model)
        self.norm = norm
        self.buckets, self.max_position = buckets, max_position
        self.span = rel_embeddings.num_embeddings // 2

    @classmethod
    def from_args(cls, args: DisentangledPositionArgs, ctx: BuildContext) -> "DisentangledPositions":
        d = ctx.dims.d_model
        return cls(rel_embeddings=nn.Embedding(2 * args.span(ctx.dims), d),
                   norm=nn.LayerNorm(d, eps=args.eps) if args.norm else None,
                   buckets=args.buckets, max_position=args.max_position(ctx.dims))

    def scores(self, q_positions: Tensor, k_positions: Tensor, dtype: torch.dtype) -> RelativeScores:
        """Query ``(B|1, T)`` and key ``(B|1, S)`` positions -> :class:`RelativeScores`."""
        device = self.rel_embeddings.weight.device
        relative = q_positions.to(device)[:, :, None] - k_positions.to(device)[:, None, :]
        if self.buckets > 0:
            relative = log_bucket_position(relative.long(), self.buckets, self.max_position)
        table = self.rel_embeddings.weight
        if self.norm is not None:
            table = self.norm(table)
        return RelativeScores(delta=relative.long(), embeddings=table, span=self.span)

    def extra_repr(self) -> str:
        return f"buckets={self.buckets}, max_position={self.max_position}, span={self.span}"
