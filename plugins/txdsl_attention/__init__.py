"""Built-in attention: ``full`` (reference and SDPA kernels) and declared kinds.

``full`` has two implementations with one parameter layout (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``), so the selection pass may pick either
and weights load into both: ``reference`` (explicit matmul softmax, what
``txdsl verify`` compares with) and ``sdpa``
(``torch.nn.functional.scaled_dot_product_attention``, preferred).

``relative_xl`` (Transformer-XL), ``two_stream`` (XLNet) and ``disentangled``
(DeBERTa) are declared: specs may name them and see their sizes; building
them fails until an implementation is registered.

Built modules are called as ``attn(x, memory=None, *, mask, position, cache)``
(:mod:`txdsl.sdk.attention`) and return ``(B, T, d_model)``.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .declared import DisentangledArgs, RelativeXLArgs, TwoStreamArgs
from .full import FullArgs, MultiHeadAttention
from .reference import ReferenceAttention
from .sdpa import SDPAAttention

__all__ = [
    "DisentangledArgs", "FullArgs", "MultiHeadAttention", "ReferenceAttention",
    "RelativeXLArgs", "SDPAAttention", "TwoStreamArgs",
]


@hookimpl
def register_attention(register):
    register(name="full", args=FullArgs, build=ReferenceAttention.from_args,
             impl="reference", priority=0)
    register(name="full", args=FullArgs, build=SDPAAttention.from_args,
             impl="sdpa", priority=10)
    register(name="relative_xl", args=RelativeXLArgs)
    register(name="two_stream", args=TwoStreamArgs)
    register(name="disentangled", args=DisentangledArgs)
