"""The activations heads name, as modules (so they show in ``repr``).

``gelu`` is the exact erf GELU (BERT, ELECTRA), ``gelu_tanh`` its tanh
approximation (GPT-2's ``gelu_new``), ``tanh`` the BERT pooler's.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

HeadActivation = Literal["gelu", "gelu_tanh", "relu"]


def activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation '{name}' (known: gelu, gelu_tanh, relu, tanh, none)")
