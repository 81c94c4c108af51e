"""Built-in normalisations: layernorm, rmsnorm, scalenorm, fixnorm, batchnorm.

Each kind is one module here: its argument model (with exact parameter
count) and its ``nn.Module`` with a ``from_args(args, ctx)`` factory.
Built modules map ``(..., width)`` to the same shape.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .batch_norm import BatchNorm, BatchNormArgs
from .fix_norm import FixNorm, FixNormArgs
from .layer_norm import LayerNorm, LayerNormArgs
from .rms_norm import RMSNorm, RMSNormArgs
from .scale_norm import ScaleNorm, ScaleNormArgs

__all__ = [
    "BatchNorm", "BatchNormArgs", "FixNorm", "FixNormArgs", "LayerNorm", "LayerNormArgs",
    "RMSNorm", "RMSNormArgs", "ScaleNorm", "ScaleNormArgs",
]


@hookimpl
def register_norms(register):
    register(name="layernorm", args=LayerNormArgs, build=LayerNorm.from_args)
    register(name="rmsnorm", args=RMSNormArgs, build=RMSNorm.from_args)
    register(name="scalenorm", args=ScaleNormArgs, build=ScaleNorm.from_args)
    register(name="fixnorm", args=FixNormArgs, build=FixNorm.from_args)
    register(name="batchnorm", args=BatchNormArgs, build=BatchNorm.from_args)
