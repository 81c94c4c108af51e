"""The activations heads accept (see :mod:`txdsl.sdk.activations`): ``gelu`` (BERT,
ELECTRA), ``gelu_tanh`` (GPT-2's ``gelu_new``), ``relu``; the pooler also takes ``tanh``."""

from typing import Literal

from txdsl.sdk.activations import activation

HeadActivation = Literal["gelu", "gelu_tanh", "relu"]

__all__ = ["HeadActivation", "activation"]
