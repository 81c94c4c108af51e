"""Mixture-of-experts FFN, declared only (Shazeer et al. 2017,
https://arxiv.org/abs/1701.06538; Switch, Fedus et al. 2021; Mixtral, Jiang
et al. 2024, https://arxiv.org/abs/2401.04088).

A router ``Linear(d, experts, bias=False)`` scores each token; the ``top_k``
best experts (each an MLP, or a GLU when ``gated``) run on it and their
outputs are summed with the renormalised router weights. Registered without
a build, so specs can name it and ``txdsl show`` can count it; building it
fails until the implementation lands.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from txdsl.sdk import ArgError, Dims, FFNArgs
from txdsl.sdk.args import linear_params

from .activations import Activation


class MoEArgs(FFNArgs):
    """Mixture of experts (Shazeer et al. 2017; Mixtral): top-k routed expert FFNs."""

    experts: PositiveInt = Field(description="number of expert feed-forwards")
    top_k: PositiveInt = Field(default=2, description="experts each token is routed to")
    act: Activation = Field(default="silu", description="the experts' activation")
    gated: bool = True  # experts are GLUs (gate, up, down), as in Mixtral
    bias: bool = False  # on the experts' layers; the router never has one

    def check(self, dims: Dims) -> None:
        if self.top_k > self.experts:
            raise ArgError(f"top_k ({self.top_k}) is larger than experts ({self.experts})",
                           arg="top_k", hint="each token is routed to top_k of the experts")

    def expert_params(self, dims: Dims) -> int:
        d, h = dims.width, self.hidden
        ins = 2 if self.gated else 1
        return ins * linear_params(d, h, self.bias) + linear_params(h, d, self.bias)

    def param_count(self, dims: Dims) -> int:
        return self.experts * self.expert_params(dims) + dims.width * self.experts

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        router = 2 * dims.width * self.experts
        return router + self.top_k * 2 * self.expert_params(dims)  # only top_k experts run
