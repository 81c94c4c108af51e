"""Activations that components name in their arguments, as modules (so they show in ``repr``).

- ``relu``: Vaswani et al. 2017;
- ``gelu``: exact GELU, x * Phi(x) (Hendrycks & Gimpel 2016,
  https://arxiv.org/abs/1606.08415); BERT, ViT, ELECTRA;
- ``gelu_tanh``: GELU's tanh approximation; GPT-2's ``gelu_new``, T5 v1.1's
  ``gelu_new``/``gelu_pytorch_tanh``;
- ``silu``: x * sigmoid(x) (Elfwing et al. 2017; "Swish", Ramachandran et al. 2017);
- ``sigmoid``: the original GLU gate (Dauphin et al. 2016);
- ``tanh``: BERT's pooler; ``none``: the identity.
"""

from __future__ import annotations

from typing import Callable, Literal

from torch import nn

Activation = Literal["relu", "gelu", "gelu_tanh", "silu"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh module computing activation ``name``."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()
