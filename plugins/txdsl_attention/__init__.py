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

Content-based sparse kinds (``topk``, ``lsh``, ``routing``) live in
:mod:`txdsl_attention.content`.

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
from . import lowrank
from .linear import register_linearized
from .content import register_content
from .persistent import PersistentArgs, PersistentMemoryAttention
from .relative_xl import RelativeXLArgs, RelativeXLAttention
from .sdpa import SDPAAttention
from .sparse import register_sparse
from .two_stream import TwoStreamArgs, TwoStreamAttention

__all__ = [
    "DisentangledArgs", "DisentangledAttention", "FlexAttention", "FullArgs", "ReferenceAttention",
    "RelativeXLArgs", "RelativeXLAttention", "SDPAAttention", "TwoStreamArgs",
    "TwoStreamAttention", "PersistentArgs", "PersistentMemoryAttention",
]


@hookimpl
def register_attention(register):
    register(name="full", args=FullArgs, build=ReferenceAttention.from_args,
             impl="reference", priority=0)
    register(name="full", args=FullArgs, build=SDPAAttention.from_args,
             impl="sdpa", priority=10)
    register(name="full", args=FullArgs, build=FlexAttention.from_args, impl="flex",
             targets=Targets(check=flex_supports), priority=5)
    register(name="persistent", args=PersistentArgs, build=PersistentMemoryAttention.from_args)
    register(name="relative_xl", args=RelativeXLArgs, build=RelativeXLAttention.from_args,
             impl="reference")
    register(name="two_stream", args=TwoStreamArgs, build=TwoStreamAttention.from_args,
             impl="reference")
    register(name="disentangled", args=DisentangledArgs, build=DisentangledAttention.from_args,
             impl="reference")
    register_linearized(register)
    register_content(register)  # topk, lsh, routing (content-based sparse)
    register_sparse(register)  # local, dilated, strided, fixed, block, global, random, sparse, longformer
    lowrank.register(register)  # linformer, nystrom, lowrank, probsparse, clustered, compressed, inducing, luna


@hookimpl(specname="register_attention")
def register_priors_and_multihead(register):
    """Attention with priors (``priors/``) and the multi-head improvements (``multihead/``)."""
    from .multihead.adaptive_span import AdaptiveSpanArgs, AdaptiveSpanAttention
    from .multihead.collaborative import CollaborativeArgs, CollaborativeAttention
    from .multihead.multi_scale import MultiScaleArgs, MultiScaleAttention
    from .multihead.routing import RoutingArgs, RoutingAttention
    from .multihead.talking_heads import TalkingHeadsArgs, TalkingHeadsAttention
    from .priors.locality import LocalityArgs, LocalityAttention
    from .priors.realformer import RealFormerArgs, RealFormerAttention
    from .priors.synthesizer_dense import SynthesizerDenseArgs, SynthesizerDenseAttention
    from .priors.synthesizer_random import SynthesizerRandomArgs, SynthesizerRandomAttention
    from .priors.task_adapter import TaskAdapterArgs, TaskAdapterAttention

    for name, args, cls in (
            ("talking_heads", TalkingHeadsArgs, TalkingHeadsAttention),
            ("collaborative", CollaborativeArgs, CollaborativeAttention),
            ("adaptive_span", AdaptiveSpanArgs, AdaptiveSpanAttention),
            ("multi_scale", MultiScaleArgs, MultiScaleAttention),
            ("head_routing", RoutingArgs, RoutingAttention),
            ("locality", LocalityArgs, LocalityAttention),
            ("realformer", RealFormerArgs, RealFormerAttention),
            ("synthesizer_dense", SynthesizerDenseArgs, SynthesizerDenseAttention),
            ("synthesizer_random", SynthesizerRandomArgs, SynthesizerRandomAttention),
            ("task_adapter", TaskAdapterArgs, TaskAdapterAttention)):
        register(name=name, args=args, build=cls.from_args, impl="reference", priority=0)
