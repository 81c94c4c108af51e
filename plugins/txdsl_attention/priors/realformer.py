"""RealFormer residual attention (He, Ravula, Kanagal, Ainslie 2020,
https://arxiv.org/abs/2012.11747).

Each layer adds the previous layer's pre-softmax scores to its own and hands
the sum on:

    S_l = Q_l K_l^T / sqrt(d_k) + S_{l-1}          (B, H, T, S)
    Attention_l = softmax(S_l + mask) V_l

The scores travel through the stack's typed state (``StackState.scores``,
pre-mask), so the first layer of a stack (no previous scores) is exactly
full attention. Only a kernel that forms the score matrix can do this: the
kind registers only its reference implementation, and validation refuses a
``realformer`` layer after a layer whose attention does not hand its scores
on (``full`` through SDPA never forms them; a linear kind has none): the
``forms_scores`` declaration of the argument models. Every layer of the
stack must have the same heads (the scores are added elementwise).
Grouped-query attention keeps working (scores are per query head); decoding
with the cache too (each step's scores cover the cache's slots).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .scores import ScoresArgs, ScoresAttention


class RealFormerArgs(ScoresArgs):
    """RealFormer residual attention (He et al. 2020): adds the previous layer's scores."""

    unsupported: ClassVar[dict[str, str]] = {
        "cross": "residual scores flow between the self-attention layers of one stack"}
    reads_scores: ClassVar[bool] = True  # needs the previous layer's StackState.scores


class RealFormerAttention(ScoresAttention):
    """Softmax attention with the previous layer's pre-softmax scores added (residual)."""

    def prior(self, scores: Tensor, *, mask, state) -> Tensor:
        if state is None:
            return scores
        previous = state.scores
        if previous is not None:
            if previous.shape != scores.shape:
                raise ValueError(f"realformer: the previous layer's scores {tuple(previous.shape)}"
                                 f" don't match this layer's {tuple(scores.shape)}; every layer "
                                 "needs the same heads")
            scores = scores + previous.to(scores.dtype)
        return scores  # handed on as StackState.scores by ScoresAttention.attend
