"""Attention kinds declared for specs but not implemented yet (``build=None``).

Each has its argument model and an exact ``param_count``, so specs naming
them check, show sizes and fail clearly only when built. All three take
relative positions as extra score terms (``accepts = {"scores"}``), not as a
q/k transform or an additive bias, and none has grouped-query attention.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import field_validator

from txdsl.sdk import ArgError, AttentionArgs, Dims
from txdsl.sdk.args import linear_params


POSITION_TERMS = ("c2p", "p2c")  # content-to-position, position-to-content


def _check_no_gqa(args: AttentionArgs, kind: str) -> None:
    if args.kv_heads is not None and args.kv_heads != args.heads:
        raise ArgError(f"{kind} attention has no grouped-query form: kv_heads ({args.kv_heads}) "
                       f"must equal heads ({args.heads})", arg="kv_heads",
                       hint="drop kv_heads")


class TwoStreamArgs(AttentionArgs):
    """XLNet two-stream relative attention (Yang et al. 2019, https://arxiv.org/abs/1906.08237).

    Content and query streams share the weights of Hugging Face's
    ``XLNetRelativeAttention``: q, k, v, o, r ``(d_model, heads, head_dim)``
    without biases; r_w_bias, r_r_bias, r_s_bias ``(heads, head_dim)``;
    seg_embed ``(2, heads, head_dim)``. The post-attention LayerNorm XLNet
    keeps inside that block is the layer's norm (``residual = post``), as in
    ``relative_xl``, so it is not counted here.
    """

    accepts: ClassVar[frozenset[str]] = frozenset({"scores"})
    bias: bool = False

    def check(self, dims: Dims) -> None:
        super().check(dims)
        _check_no_gqa(self, "two_stream")
        if self.bias:
            raise ArgError("two_stream attention has no projection biases (bias: true)",
                           arg="bias", hint="drop bias")

    def param_count(self, dims: Dims) -> int:
        hd, d, h = self.head_size(dims), dims.width, self.heads
        projections = 5 * d * h * hd  # q, k, v, o, r
        biases = 3 * h * hd + 2 * h * hd  # r_w, r_r, r_s biases; seg_embed
        return projections + biases
