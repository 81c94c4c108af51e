"""Built-in attention: ``full`` (reference and SDPA kernels) and the relative kinds.

``full`` has three implementations with one parameter layout (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``), so the selection pass may pick any and
weights load into all: ``reference`` (explicit matmul softmax, what ``txdsl
verify`` compares with), ``sdpa``
(``torch.nn.functional.scaled_dot_product_attention``, preferred) and
``flex`` (FlexAttention with a block mask; compiled builds only on CPU).

``relative_xl`` (Transformer-XL), ``two_stream`` (XLNet) and ``disentangled``
(DeBERTa) take relative positions as extra score terms (``accepts =
{"scores"}``); each has one implementation, ``reference``.

Built modules subclass :class:`txdsl.sdk.attention.Attention` (the contract:
``attn(x, memory=None, *, mask, position, cache, state)``) and return
``(B, T, d_model)``.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl
from txdsl.sdk import Targets

from .disentangled import DisentangledArgs, DisentangledAttention
from .flex import FlexAttention, flex_supports
from .full import FullArgs, ReferenceAttention
from .relative_xl import RelativeXLArgs, RelativeXLAttention
from .sdpa import SDPAAttention
from .two_stream import TwoStreamArgs, TwoStreamAttention

__all__ = [
    "DisentangledArgs", "DisentangledAttention", "FlexAttention", "FullArgs", "ReferenceAttention",
    "RelativeXLArgs", "RelativeXLAttention", "SDPAAttention", "TwoStreamArgs",
    "TwoStreamAttention",
]


@hookimpl
def register_attention(register):
    register(name="full", args=FullArgs, build=ReferenceAttention.from_args,
             impl="reference", priority=0)
    register(name="full", args=FullArgs, build=SDPAAttention.from_args,
             impl="sdpa", priority=10)
    register(name="full", args=FullArgs, build=FlexAttention.from_args, impl="flex",
             targets=Targets(check=flex_supports), priority=5)
    register(name="relative_xl", args=RelativeXLArgs, build=RelativeXLAttention.from_args,
             impl="reference")
    register(name="two_stream", args=TwoStreamArgs, build=TwoStreamAttention.from_args,
             impl="reference")
    register(name="disentangled", args=DisentangledArgs, build=DisentangledAttention.from_args,
             impl="reference")
