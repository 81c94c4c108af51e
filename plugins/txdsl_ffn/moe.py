"""Mixture-of-experts FFN (Shazeer et al. 2017, "Outrageously Large Neural Networks",
https://arxiv.org/abs/1701.06538; Switch Transformers, Fedus et al. 2021,
https://arxiv.org/abs/2101.03961; Mixtral, Jiang et al. 2024,
https://arxiv.org/abs/2401.04088).

A router ``Linear(d, experts, bias=False)`` gives each token the softmax
probabilities p (in float32); its ``top_k`` best experts (each an MLP, or a
GLU when ``gated``) run on it and their outputs are summed with weights p_e,
renormalised over the chosen k when ``normalize`` (Mixtral; Switch's top-1
keeps p_e). With ``capacity_factor``, each expert takes at most
C = ceil(capacity_factor * T * top_k / experts) tokens of a sequence while
training; later tokens (all first choices before any second choice, as in
GShard) are dropped for that expert: they contribute nothing and pass through
the residual. The load-balancing loss (Switch eq. 4-6)
``balance_weight * experts * sum_e f_e P_e`` (f_e: share of top-k
assignments, P_e: mean router probability, over the batch's real tokens: padding
excluded by the stack's ``StackState.inputs["attention_mask"]``, as Hugging Face's
``load_balancing_loss_func(..., attention_mask)``) and the
router z-loss (Zoph et al. 2022) ``z_weight * mean(logsumexp(logits)^2)`` are
added to the stack's auxiliary losses (``load_balancing``, ``router_z``).

Every expert runs on every token and the outputs are combined with the
sparse weights: one graph with static shapes (``fullgraph`` compiles); the
FLOP model counts the sparse computation (router + top_k experts).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, FFNArgs
from txdsl.sdk.args import linear_params

from .activations import Activation, activation
from .glu import GatedFeedForward
from .mlp import FeedForward


class MoEArgs(FFNArgs):
    """Mixture of experts (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et
    al. 2024): top-k routed expert FFNs with capacity and a load-balancing loss."""

    example: ClassVar[dict[str, Any]] = {"experts": 4}  # what `txdsl verify moe` builds

    experts: PositiveInt = Field(description="number of expert feed-forwards")
    top_k: PositiveInt = Field(default=2, description="experts each token is routed to")
    act: Activation = Field(default="silu", description="the experts' activation")
    gated: bool = Field(default=True, description="experts are GLUs (gate, up, down), as in "
                        "Mixtral; false: two-layer MLPs (up, down), as in Switch")
    bias: bool = Field(default=False, description="biases on the experts' layers; the router "
                       "never has one")
    normalize: bool = Field(default=True, description="renormalise the top_k router "
                            "probabilities to sum to 1 (Mixtral); false keeps them (Switch)")
    capacity_factor: float | None = Field(
        default=None, gt=0.0, description="while training, each expert takes at most "
        "ceil(capacity_factor * T * top_k / experts) tokens per sequence, the rest are dropped; "
        "none: no dropping")
    balance_weight: float = Field(default=0.01, ge=0.0, description="weight of the "
                                  "load-balancing auxiliary loss (Switch's alpha)")
    z_weight: float = Field(default=0.0, ge=0.0, description="weight of the router z-loss "
                            "(Zoph et al. 2022); 0: not added")

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


class MixtureOfExperts(nn.Module):
    """Router + experts; ``forward(x (B, T, d), state=...)`` -> ``(B, T, d)``."""

    takes_state = True  # the layer passes the StackState: the auxiliary losses go there

    def __init__(self, *, router: nn.Linear, experts: list[nn.Module], top_k: int,
                 normalize: bool = True, capacity_factor: float | None = None,
                 balance_weight: float = 0.01, z_weight: float = 0.0):
        super().__init__()
        self.router, self.experts = router, nn.ModuleList(experts)
        self.top_k, self.normalize, self.capacity_factor = top_k, normalize, capacity_factor
        self.balance_weight, self.z_weight = balance_weight, z_weight

    @classmethod
    def from_args(cls, args: MoEArgs, ctx: BuildContext) -> "MixtureOfExperts":
        args.check(ctx.dims)
        d, h, b = ctx.dims.width, args.hidden, args.bias

        def expert() -> nn.Module:
            if args.gated:
                return GatedFeedForward(gate=nn.Linear(d, h, bias=b), up=nn.Linear(d, h, bias=b),
                                        down=nn.Linear(h, d, bias=b), act=activation(args.act),
                                        dropout=args.dropout)
            return FeedForward(up=nn.Linear(d, h, bias=b), down=nn.Linear(h, d, bias=b),
                               act=activation(args.act), dropout=args.dropout)

        return cls(router=nn.Linear(d, args.experts, bias=False),
                   experts=[expert() for _ in range(args.experts)], top_k=args.top_k,
                   normalize=args.normalize, capacity_factor=args.capacity_factor,
                   balance_weight=args.balance_weight, z_weight=args.z_weight)

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x`` (B, T, d) -> combine weights (B, T, E) (zero off the kept top-k), router
        logits and probabilities (B, T, E) in float32, top-k assignments (B, T, E) 0/1."""
        E, k = len(self.experts), self.top_k
        logits = self.router(x).float()  # (B, T, E)
        probs = torch.softmax(logits, dim=-1)
        top_p, top_i = torch.topk(probs, k, dim=-1)  # (B, T, k)
        if self.normalize:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        choice = nn.functional.one_hot(top_i, E).to(probs.dtype)  # (B, T, k, E)
        assigned = choice.sum(dim=2)  # (B, T, E)
        if self.capacity_factor is not None and self.training:
            B, T = x.shape[:2]
            capacity = math.ceil(self.capacity_factor * T * k / E)
            by_rank = choice.transpose(1, 2).reshape(B, k * T, E)  # first choices first
            priority = torch.cumsum(by_rank, dim=1)  # (B, k*T, E): place in its expert's queue
            kept = (by_rank * (priority <= capacity)).reshape(B, k, T, E).transpose(1, 2)
            choice = kept  # (B, T, k, E)
        combine = (choice * top_p[..., None]).sum(dim=2)  # (B, T, E)
        return combine, logits, probs, assigned

    def forward(self, x: Tensor, *, state=None) -> Tensor:  # (B, T, d) -> (B, T, d)
        combine, logits, probs, assigned = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):  # dense: every expert on every token
            out = out + combine[..., e, None].to(x.dtype) * expert(x)
        if state is not None and self.balance_weight > 0:
            E = len(self.experts)
            real = state.inputs.get("attention_mask")  # (B, T) 1 = real token, or absent
            if real is None:
                f = assigned.flatten(0, 1).mean(dim=0)  # (E,): share of tokens sent to e
                p = probs.flatten(0, 1).mean(dim=0)  # (E,): mean router probability
            else:  # padding excluded, as HF's load_balancing_loss_func(attention_mask=...)
                keep = real.to(probs.dtype).flatten()[:, None]  # (B*T, 1)
                n = keep.sum().clamp(min=1)
                f = (assigned.flatten(0, 1) * keep).sum(dim=0) / n
                p = (probs.flatten(0, 1) * keep).sum(dim=0) / n
            state.add_loss("load_balancing", self.balance_weight * E * (f * p).sum())
        if state is not None and self.z_weight > 0:
            z = torch.logsumexp(logits, dim=-1).pow(2).mean()
            state.add_loss("router_z", self.z_weight * z)
        return out

    def extra_repr(self) -> str:
        cap = f", capacity_factor={self.capacity_factor:g}" if self.capacity_factor else ""
        return f"experts={len(self.experts)}, top_k={self.top_k}{cap}"
