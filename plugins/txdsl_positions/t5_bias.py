"""T5 bucketed relative position bias (Raffel et al. 2020, https://arxiv.org/abs/1910.10683, §2.1).

A learned scalar per head and relative-position bucket, added to the scores
and shared by every layer of the stack. Buckets (Mesh TensorFlow's, as HF's
``T5Attention._relative_position_bucket``): with ``bidirectional`` half of
them for keys after the query; of the rest, half are exact small distances
and half log-spaced up to ``max_distance``, beyond which all share the last
bucket. T5's encoder is bidirectional, its decoder not.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs

from .common import heads_of


class T5BiasArgs(PositionArgs):
    """Learned per-head bias over bucketed relative distances (T5, Raffel et al. 2020)."""

    acts: ClassVar = "bias"
    buckets: PositiveInt = Field(default=32, description="relative-position buckets, the rows "
                                 "of the (buckets, heads) bias table; with bidirectional half "
                                 "are for keys after the query; of each half, half are exact "
                                 "distances, half log-spaced (T5's relative_attention_num_buckets "
                                 "32)")
    max_distance: PositiveInt = Field(default=128, description="where the log-spaced buckets "
                                      "end: pairs this far apart or farther share the last "
                                      "bucket (T5's relative_attention_max_distance 128)")
    bidirectional: bool = Field(default=True, description="separate buckets for keys after "
                                "the query (T5's encoder); false: keys after the query share "
                                "bucket 0 (T5's causal decoder)")

    def _max_exact(self) -> int:
        return (self.buckets // 2 if self.bidirectional else self.buckets) // 2

    def check(self, dims: Dims) -> None:
        heads_of(dims, "t5_bias")
        need = 4 if self.bidirectional else 2
        if self.buckets < need:
            raise ArgError(f"buckets ({self.buckets}) must be at least {need}", arg="buckets")
        if self.max_distance <= self._max_exact():
            raise ArgError(f"max_distance ({self.max_distance}) must exceed the {self._max_exact()} "
                           "exact buckets", arg="max_distance")

    def param_count(self, dims: Dims) -> int:
        return self.buckets * heads_of(dims, "t5_bias")


def relative_position_bucket(relative_position: Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """Bucket of ``key_position - query_position`` (HF ``T5Attention._relative_position_bucket``)."""
    buckets = torch.zeros_like(relative_position, dtype=torch.long)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).to(torch.long) * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)  # keys after the query all share bucket 0
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # distance/max_exact is 0 for distance 0 -> log = -inf; torch.where discards those lanes
    large = max_exact + (
        torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)).to(torch.long)
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(nn.Module):
    acts = "bias"

    def __init__(self, *, relative_attention_bias: nn.Embedding, max_distance: int = 128,
                 bidirectional: bool = True):
        super().__init__()
        self.relative_attention_bias = relative_attention_bias  # (buckets, heads)
        self.buckets = relative_attention_bias.num_embeddings
        self.max_distance, self.bidirectional = max_distance, bidirectional

    @classmethod
    def from_args(cls, args: T5BiasArgs, ctx: BuildContext) -> "T5RelativeBias":
        args.check(ctx.dims)
        embed = nn.Embedding(args.buckets, heads_of(ctx.dims, "t5_bias"))
        return cls(relative_attention_bias=embed, max_distance=args.max_distance,
                   bidirectional=args.bidirectional)

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """Query ``(B|1, T)`` and key ``(B|1, S)`` positions (or ``(T,)``/``(S,)``) ->
        ``(B|1, H, T, S)`` bias."""
        device = self.relative_attention_bias.weight.device
        q = (q_positions if q_positions.dim() == 2 else q_positions[None]).to(device)
        k = (k_positions if k_positions.dim() == 2 else k_positions[None]).to(device)
        relative = k[:, None, :] - q[:, :, None]  # (B|1, T, S)
        bucket = relative_position_bucket(relative.long(), self.bidirectional, self.buckets,
                                          self.max_distance)
        values = self.relative_attention_bias(bucket)  # (B|1, T, S, H)
        return values.permute(0, 3, 1, 2)  # (B|1, H, T, S)

    def extra_repr(self) -> str:
        return (f"buckets={self.buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")
