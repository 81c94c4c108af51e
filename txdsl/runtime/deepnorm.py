"""DeepNorm's constants and initialisation (Wang et al. 2022, "DeepNet: Scaling Transformers
to 1,000 Layers", https://arxiv.org/abs/2203.00555).

A ``residual = deepnorm`` layer computes ``LN(alpha * x + f(x))`` (post-norm with
an up-weighted residual) and its ``ffn``, ``v_proj`` and ``out_proj`` weights are
initialised ``xavier_normal_(gain=beta)``, ``q_proj``/``k_proj`` with gain 1
(the paper's Figure 2). ``alpha`` and ``beta`` come from the depth (Table 1):

- encoder-only (N layers) or decoder-only (M layers):
  ``alpha = (2 N)^(1/4)``, ``beta = (8 N)^(-1/4)``;
- encoder-decoder: the encoder ``alpha = 0.81 (N^4 M)^(1/16)``,
  ``beta = 0.87 (N^4 M)^(-1/16)``; the decoder ``alpha = (3 M)^(1/4)``,
  ``beta = (12 M)^(-1/4)``.
"""

from __future__ import annotations

import torch
from torch import nn


def deepnorm_constants(role: str, n_encoder: int, n_decoder: int) -> tuple[float, float]:
    """``(alpha, beta)`` of a ``role`` stack in a model with these layer counts (0: absent)."""
    if n_encoder and n_decoder:
        if role == "encoder":
            depth = n_encoder ** 4 * n_decoder
            return 0.81 * depth ** (1 / 16), 0.87 * depth ** (-1 / 16)
        return (3 * n_decoder) ** 0.25, (12 * n_decoder) ** -0.25
    n = n_encoder or n_decoder
    return (2 * n) ** 0.25, (8 * n) ** -0.25


def deepnorm_init(layer: nn.Module, beta: float) -> None:
    """Re-initialise one layer's projections: gain ``beta`` on the FFN's linears and the
    attentions' ``v_proj``/``out_proj``, gain 1 on ``q_proj``/``k_proj``; biases 0."""
    def xavier(linear: nn.Module, gain: float) -> None:
        if isinstance(linear, nn.Linear):
            nn.init.xavier_normal_(linear.weight, gain=gain)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    with torch.no_grad():
        for name in ("attention", "cross_attention"):
            attn = getattr(layer, name, None)
            if attn is None:
                continue
            for proj, gain in (("q_proj", 1.0), ("k_proj", 1.0), ("v_proj", beta),
                               ("out_proj", beta)):
                xavier(getattr(attn, proj, None), gain)
        if getattr(layer, "ffn", None) is not None:
            for m in layer.ffn.modules():
                if m is not getattr(layer.ffn, "router", None):  # a MoE's router keeps its init
                    xavier(m, beta)
