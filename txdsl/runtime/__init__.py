"""The modules a built model is made of: embedding, layer, stack, model, and decoding.

Components (attention, norms, FFNs, positions, heads) come from plugins;
these modules wire them together. :func:`txdsl.back.construct.construct` builds
them from a model IR.
"""

from .cache import ModelCache, StackCache
from .embedding import Embedding
from .generate import generate, next_token, position_ids_from_mask
from .layer import Layer
from .model import TxModel
from .outputs import TxOutput
from .stack import Stack

__all__ = ["Embedding", "Layer", "ModelCache", "Stack", "StackCache", "TxModel", "TxOutput",
           "generate", "next_token", "position_ids_from_mask"]
