"""Gated linear units in the FFN (Shazeer 2020, "GLU Variants Improve
Transformer", https://arxiv.org/abs/2002.05202).

FFN(x) = down(dropout(act(gate(x)) * up(x))), three ``Linear`` layers named
``gate``, ``up`` (both d -> hidden) and ``down`` (hidden -> d), as in
LLaMA's ``LlamaMLP`` (``gate_proj``, ``up_proj``, ``down_proj``) and T5 v1.1's
``T5DenseGatedActDense`` (``wi_0``, ``wi_1``, ``wo``). The kinds differ only
in the gate's activation:

- ``glu``: sigmoid (Dauphin et al. 2016, https://arxiv.org/abs/1612.08083);
- ``reglu``: ReLU;
- ``geglu``: GELU; ``approximate: tanh`` is T5 v1.1's ``gelu_new``;
- ``swiglu``: SiLU/Swish (PaLM, LLaMA).

Biases default to off (T5, LLaMA, and Shazeer's experiments); ``bias: true``
puts them on all three layers. With hidden = 2/3 of an MLP's, the parameter
count matches the MLP's (3 d h vs 2 d h).
"""

from __future__ import annotations

from pydantic import Field
from typing import ClassVar, Literal

from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, FFNArgs
from txdsl.sdk.args import linear_params

from .activations import activation


class GLUArgs(FFNArgs):
    """GLU FFN (Dauphin et al. 2016; Shazeer 2020): down(sigmoid(gate(x)) * up(x))."""

    gate_act: ClassVar[str] = "sigmoid"
    bias: bool = Field(default=False, description="biases on the gate, up and down "
                       "projections (none in T5 v1.1 and LLaMA)")

    def param_count(self, dims: Dims) -> int:
        d, h = dims.width, self.hidden
        return 2 * linear_params(d, h, self.bias) + linear_params(h, d, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.param_count(dims) + 2 * self.hidden  # + activation and gating product

    def activation(self) -> nn.Module:
        return activation(self.gate_act)

    def tp_plan(self, dims: Dims, tp: int):
        from txdsl.sdk.sharding import column_then_row

        return column_then_row(("gate", "up"), "down")  # gate and up split alike


class ReGLUArgs(GLUArgs):
    """ReGLU FFN (Shazeer 2020): down(relu(gate(x)) * up(x))."""

    gate_act: ClassVar[str] = "relu"


class GeGLUArgs(GLUArgs):
    """GeGLU FFN (Shazeer 2020; T5 v1.1 with approximate: tanh): down(gelu(gate(x)) * up(x))."""

    approximate: Literal["none", "tanh"] = Field(
        default="none", description="GELU exactly, or its tanh approximation")

    def activation(self) -> nn.Module:
        return nn.GELU(approximate=self.approximate)


class SwiGLUArgs(GLUArgs):
    """SwiGLU FFN (Shazeer 2020; PaLM, LLaMA): down(silu(gate(x)) * up(x))."""

    gate_act: ClassVar[str] = "silu"


class GatedFeedForward(nn.Module):
    """down(dropout(act(gate(x)) * up(x))); receives its built layers (torchtune style)."""

    def __init__(self, *, gate: nn.Module, up: nn.Module, down: nn.Module, act: nn.Module,
                 dropout: float = 0.0):
        super().__init__()
        self.gate, self.up, self.down, self.act = gate, up, down, act
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_args(cls, args: GLUArgs, ctx: BuildContext) -> "GatedFeedForward":
        d, h, b = ctx.dims.width, args.hidden, args.bias
        return cls(gate=nn.Linear(d, h, bias=b), up=nn.Linear(d, h, bias=b),
                   down=nn.Linear(h, d, bias=b), act=args.activation(), dropout=args.dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, T, d)
        h = self.act(self.gate(x)) * self.up(x)  # (B, T, hidden)
        return self.down(self.dropout(h))
