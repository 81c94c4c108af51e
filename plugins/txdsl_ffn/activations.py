"""The activations feed-forward blocks name, as modules (so they show in ``repr``).

- ``relu``: Vaswani et al. 2017;
- ``gelu``: exact GELU, x * Phi(x) (Hendrycks & Gimpel 2016,
  https://arxiv.org/abs/1606.08415); BERT, ViT;
- ``gelu_tanh``: GELU's tanh approximation; GPT-2's ``gelu_new``, T5 v1.1's
  ``gelu_new``/``gelu_pytorch_tanh``;
- ``silu``: x * sigmoid(x) (Elfwing et al. 2017; "Swish", Ramachandran et al. 2017);
- ``sigmoid``: the original GLU gate (Dauphin et al. 2016).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

Activation = Literal["relu", "gelu", "gelu_tanh", "silu"]


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "silu":
        return nn.SiLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation '{name}' (known: relu, gelu, gelu_tanh, silu, sigmoid)")
