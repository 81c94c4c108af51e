"""Adaptive attention span (Sukhbaatar, Grave, Bojanowski, Joulin 2019,
https://arxiv.org/abs/1905.07799).

Each head ``h`` learns a span ``z_h`` in ``[0, max_span]``; a key at distance
``x = |i - j|`` is weighted by the soft mask

    m_z(x) = clamp((ramp + z - x) / ramp, 0, 1)
    a_ij = m_z(i - j) exp(s_ij) / sum_r m_z(i - r) exp(s_ir)
         = softmax_j(s_ij + log m_z(i - j))

(the softmax, masked softly; computed as the second form). ``z_h = max_span * ratio_h``
with ``ratio_h`` a parameter clamped to ``[0, 1]``. The span regulariser,
the mean over heads of ``z_h / max_span``, is added to the model's
auxiliary losses as ``"adaptive_span"`` (summed over layers; the paper
scales it by a small coefficient, the caller's ``aux_weight``). At full
span (``ratio = 1``, ``max_span`` >= the longest distance) ``m = 1`` on
every key and this is full attention. Grouped-query attention is
unaffected: the span acts on the weights, per query head.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, Dims
from txdsl.sdk.attention import masked_fill_value

from ..priors.scores import ScoresArgs, ScoresAttention, distance


class AdaptiveSpanArgs(ScoresArgs):
    """Adaptive attention span (Sukhbaatar et al. 2019): a learnable soft span per head."""

    example: ClassVar[dict[str, Any]] = {"max_span": 16}
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "a span measures distances within one sequence"}

    max_span: PositiveInt = Field(description="S, the longest span a head may learn (tokens)")
    ramp: PositiveInt = Field(default=8, description="R, the width of the soft mask's ramp")
    init: float = Field(default=1.0, ge=0.0, le=1.0,
                        description="each head's starting span as a fraction of max_span")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if dims.context is not None and self.max_span > dims.context:
            raise ArgError(f"max_span ({self.max_span}) is longer than the context "
                           f"({dims.context})", arg="max_span", hint="max_span <= context")

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + self.heads


class AdaptiveSpanAttention(ScoresAttention):
    """Softmax attention with a learnable soft mask on each head's distance to its keys."""

    def __init__(self, *, max_span: int, ramp: int, init: float, **parts):
        super().__init__(**parts)
        self.max_span, self.ramp = max_span, ramp
        self.span_ratio = nn.Parameter(torch.full((self.heads, 1, 1), init))  # (H, 1, 1)

    @classmethod
    def from_args(cls, args: AdaptiveSpanArgs, ctx) -> "AdaptiveSpanAttention":
        return cls(max_span=args.max_span, ramp=args.ramp, init=args.init,
                   **cls.projections(args, ctx))

    def spans(self) -> Tensor:
        """``(H, 1, 1)`` each head's current span z_h in tokens."""
        return self.span_ratio.clamp(0.0, 1.0) * self.max_span

    def soft_mask(self, mask, T: int, S: int, device) -> Tensor:
        """``(H, T, S)`` m_z(|i - j|)."""
        x = distance(mask, T, S, device).abs().to(self.span_ratio.dtype)  # (T, S)
        return ((self.ramp + self.spans() - x) / self.ramp).clamp(0.0, 1.0)

    def prior(self, scores: Tensor, *, mask, state) -> Tensor:
        # m exp(s) / sum m exp(s) == softmax(s + log m): exact, and stable where a plain
        # renormalisation of the softmax would divide by a vanishing sum.
        T, S = scores.shape[2], scores.shape[3]
        m = self.soft_mask(mask, T, S, scores.device).to(scores.dtype)  # (H, T, S)
        if state is not None:
            state.add_loss("adaptive_span", self.spans().mean() / self.max_span)
        # m = 1 at distance 0, so a query always keeps itself
        return torch.where(m > 0, scores + torch.log(m), masked_fill_value(scores.dtype))
