"""What a plugin author needs: argument base classes, dimensions, targets.

A component plugin subclasses one of the ``*Args`` bases (which carry the
family's common arguments, its checks and its cost model), writes an
``nn.Module`` and registers both from a hook in :mod:`txdsl.hookspecs`.
An attention module subclasses :class:`Attention` (the contract:
:mod:`txdsl.sdk.attention`; masks :mod:`~txdsl.sdk.mask`, positions
:mod:`~txdsl.sdk.positions`, decode state :mod:`~txdsl.sdk.cache`).
"""

from .args import (
    ArgError,
    AttentionArgs,
    ComponentArgs,
    Dims,
    FFNArgs,
    HeadArgs,
    NormArgs,
    PatchesArgs,
    PositionArgs,
)
from .attention import Attention, StackState, repeat_kv, softmax_attention
from .cache import CrossKV, StaticKV
from .mask import AttentionMask
from .positions import PositionContext
from .targets import BuildContext, Target, Targets

__all__ = [
    "ArgError", "Attention", "AttentionArgs", "AttentionMask", "BuildContext", "ComponentArgs",
    "CrossKV", "Dims", "FFNArgs", "HeadArgs", "NormArgs", "PatchesArgs", "PositionArgs",
    "PositionContext", "StackState", "StaticKV", "Target", "Targets", "repeat_kv",
    "softmax_attention",
]
