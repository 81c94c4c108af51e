"""``cosformer``: cosFormer attention (Qin et al. 2022, "cosFormer: Rethinking Softmax in
Attention", https://arxiv.org/abs/2202.08791).

ReLU features with a cos re-weighting that favours nearby tokens (eq. 9-11):

    s(i, j) = relu(q_i) . relu(k_j) cos(pi/2 * (i - j) / M),

and ``cos(a - b) = cos a cos b + sin a sin b`` makes it linear: the features are
``[relu(x) cos(pi i / 2M), relu(x) sin(pi i / 2M)]`` (``F = 2 head_dim``), so the
same prefix sums, chunks and recurrent decode state apply. ``M`` is ``horizon``
(default the model's context); positions are the tokens' slots.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk.args import ArgError, Dims

from .base import LinearizedArgs, LinearizedAttention

DEFAULT_HORIZON = 1024  # M when neither the argument nor the model's context gives one


class CosformerArgs(LinearizedArgs):
    """cosFormer (Qin et al. 2022, https://arxiv.org/abs/2202.08791): ReLU feature map with a
    cos re-weighting of distance, linear in length."""

    horizon: PositiveInt | None = Field(default=None, description="M of cos(pi/2 (i-j)/M): "
                                        "the longest distance re-weighted; default the "
                                        "model's context (1024 if unknown)")

    def horizon_for(self, dims: Dims) -> int:
        return self.horizon or dims.context or DEFAULT_HORIZON

    def feature_size(self, dims: Dims) -> int:
        return 2 * self.head_size(dims)

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.horizon is not None and dims.context and self.horizon < dims.context:
            raise ArgError(f"horizon ({self.horizon}) is shorter than the context "
                           f"({dims.context}): cos(pi/2 (i-j)/M) turns negative past M",
                           arg="horizon", hint=f"use horizon >= {dims.context}, or omit it")


class CosformerAttention(LinearizedAttention):
    """``[relu(x) cos, relu(x) sin]`` features of each slot ``i`` (angle ``pi i / 2M``)."""

    def __init__(self, *, horizon: int = DEFAULT_HORIZON, **kw):
        super().__init__(**kw)
        self.horizon = horizon

    @classmethod
    def extra(cls, args, ctx):
        return {"horizon": args.horizon_for(ctx.dims)}

    def reweight(self, x: Tensor, pos: Tensor) -> Tensor:
        angle = (math.pi / 2) * pos.float() / self.horizon  # (T,)
        r = F.relu(x.float())  # (B, H, T, hd)
        return torch.cat([r * angle.cos()[:, None], r * angle.sin()[:, None]], dim=-1)

    def features(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor):
        return self.reweight(q, q_pos), self.reweight(k, k_pos)  # (B, H, T, 2 hd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, horizon={self.horizon}"
