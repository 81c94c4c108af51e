"""What a plugin author needs: argument base classes, dimensions, targets.

A component plugin subclasses one of the ``*Args`` bases (which carry the
family's common arguments, its checks and its cost model), writes an
``nn.Module`` and registers both from a hook in :mod:`txdsl.hookspecs`.
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
from .targets import BuildContext, Target, Targets

__all__ = [
    "ArgError", "AttentionArgs", "BuildContext", "ComponentArgs", "Dims", "FFNArgs",
    "HeadArgs", "NormArgs", "PatchesArgs", "PositionArgs", "Target", "Targets",
]
