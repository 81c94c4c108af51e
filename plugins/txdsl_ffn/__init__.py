"""Built-in feed-forward blocks: mlp, the GLU family (glu, reglu, geglu,
swiglu), and moe (a mixture of experts).

Built modules map ``(B, T, d_model)`` to ``(B, T, d_model)``.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .glu import GatedFeedForward, GeGLUArgs, GLUArgs, ReGLUArgs, SwiGLUArgs
from .mlp import FeedForward, MLPArgs
from .moe import MixtureOfExperts, MoEArgs

__all__ = [
    "FeedForward", "GLUArgs", "GatedFeedForward", "GeGLUArgs", "MLPArgs", "MixtureOfExperts",
    "MoEArgs",
    "ReGLUArgs", "SwiGLUArgs",
]


@hookimpl
def register_ffns(register):
    register(name="mlp", args=MLPArgs, build=FeedForward.from_args)
    register(name="glu", args=GLUArgs, build=GatedFeedForward.from_args)
    register(name="reglu", args=ReGLUArgs, build=GatedFeedForward.from_args)
    register(name="geglu", args=GeGLUArgs, build=GatedFeedForward.from_args)
    register(name="swiglu", args=SwiGLUArgs, build=GatedFeedForward.from_args)
    register(name="moe", args=MoEArgs, build=MixtureOfExperts.from_args)
