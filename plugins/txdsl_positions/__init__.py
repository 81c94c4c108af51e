"""Built-in position schemes, by where they act (``PositionArgs.acts``):

- ``embedding`` (added to the token embeddings): ``sinusoidal``, ``learned``;
- ``qk`` (a transform of queries and keys): ``rope``;
- ``bias`` (an additive ``(1, H, T, S)`` score bias): ``alibi``, ``t5_bias``;
- ``scores`` (extra score terms the attention adds): ``relative_xl``,
  ``disentangled``, ``shaw`` and ``cope`` (the last two with the ``relative``
  attention registered here, :mod:`.relative_attention`).

Embedding modules map position ids ``(B, T)`` to ``(B, T, width)``; the
others implement :class:`txdsl.sdk.attention.PositionModule` (``rotate`` or
``bias``).
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .alibi import AlibiArgs, AlibiPositions, alibi_slopes
from .cope import CopeArgs, CopePositions
from .disentangled import DisentangledPositionArgs, DisentangledPositions, log_bucket_position
from .learned import LearnedArgs, LearnedPositions
from .relative_xl import RelativeXLPositionArgs, RelativeXLPositions
from .relative_attention import RelativeArgs, RelativeAttention
from .rope import RopeArgs, RotaryPositions
from .shaw import ShawArgs, ShawPositions
from .sinusoidal import SinusoidalArgs, SinusoidalPositions
from .t5_bias import T5BiasArgs, T5RelativeBias, relative_position_bucket

__all__ = [
    "AlibiArgs", "AlibiPositions", "CopeArgs", "DisentangledPositionArgs",
    "DisentangledPositions", "log_bucket_position", "LearnedArgs",
    "LearnedPositions", "RelativeXLPositionArgs", "RelativeXLPositions", "RopeArgs", "RotaryPositions", "ShawArgs",
    "SinusoidalArgs", "SinusoidalPositions", "T5BiasArgs", "T5RelativeBias", "alibi_slopes",
    "relative_position_bucket", "CopePositions", "ShawPositions", "RelativeArgs",
    "RelativeAttention",
]


@hookimpl
def register_positions(register):
    register(name="sinusoidal", args=SinusoidalArgs, build=SinusoidalPositions.from_args)
    register(name="learned", args=LearnedArgs, build=LearnedPositions.from_args)
    register(name="rope", args=RopeArgs, build=RotaryPositions.from_args)
    register(name="alibi", args=AlibiArgs, build=AlibiPositions.from_args)
    register(name="t5_bias", args=T5BiasArgs, build=T5RelativeBias.from_args)
    register(name="relative_xl", args=RelativeXLPositionArgs,
             build=RelativeXLPositions.from_args)
    register(name="disentangled", args=DisentangledPositionArgs,
             build=DisentangledPositions.from_args)
    register(name="shaw", args=ShawArgs, build=ShawPositions.from_args)
    register(name="cope", args=CopeArgs, build=CopePositions.from_args)


@hookimpl
def register_attention(register):
    register(name="relative", args=RelativeArgs, build=RelativeAttention.from_args,
             impl="reference")
