"""The model IR: the resolved, validated contract between the language and the builder.

Plain data (pydantic v2, frozen, ``extra="forbid"``), JSON-serialisable,
hashable, with every layer explicit. See :class:`ModelIR`.
"""

from .component import Component
from .model import EmbeddingIR, HaltingIR, HeadIR, LayerIR, ModelIR, StackIR
from .node import Node

__all__ = ["Component", "EmbeddingIR", "HaltingIR", "HeadIR", "LayerIR", "ModelIR", "Node", "StackIR"]
