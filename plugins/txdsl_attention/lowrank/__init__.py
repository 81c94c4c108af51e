"""Low-rank and prototype attention (issue 9): ``linformer``, ``nystrom``, ``lowrank``
(factored projections), ``probsparse`` (Informer), and the prototype and
memory-compression kinds ``clustered``, ``compressed``, ``inducing``, ``luna``.

Each kind is one file; :func:`register` adds them to an attention registry
(called from ``txdsl_attention.register_attention``).
"""

from __future__ import annotations

from .clustered import ClusteredArgs, ClusteredAttention
from .compressed import CompressedArgs, CompressedAttention
from .factored import LowRankArgs, LowRankAttention, LowRankSDPAAttention
from .inducing import InducingArgs, InducingAttention
from .linformer import LinformerArgs, LinformerAttention
from .luna import LunaArgs, LunaAttention
from .nystrom import NystromArgs, NystromAttention
from .probsparse import ProbSparseArgs, ProbSparseAttention

__all__ = ["ClusteredArgs", "ClusteredAttention", "CompressedArgs", "CompressedAttention",
           "InducingArgs", "InducingAttention", "LunaArgs", "LunaAttention", "LinformerArgs",
           "LinformerAttention", "LowRankArgs", "LowRankAttention", "LowRankSDPAAttention",
           "NystromArgs", "NystromAttention", "ProbSparseArgs", "ProbSparseAttention", "register"]


def register(register_kind) -> None:
    """Register every kind of this package (impl ``reference``; ``lowrank`` also ``sdpa``,
    preferred, as ``full``)."""
    register_kind(name="linformer", args=LinformerArgs, build=LinformerAttention.from_args,
                  impl="reference")
    register_kind(name="nystrom", args=NystromArgs, build=NystromAttention.from_args,
                  impl="reference")
    register_kind(name="lowrank", args=LowRankArgs, build=LowRankAttention.from_args,
                  impl="reference", priority=0)
    register_kind(name="lowrank", args=LowRankArgs, build=LowRankSDPAAttention.from_args,
                  impl="sdpa", priority=10)
    register_kind(name="probsparse", args=ProbSparseArgs, build=ProbSparseAttention.from_args,
                  impl="reference")
    register_kind(name="clustered", args=ClusteredArgs, build=ClusteredAttention.from_args,
                  impl="reference")
    register_kind(name="compressed", args=CompressedArgs, build=CompressedAttention.from_args,
                  impl="reference")
    register_kind(name="inducing", args=InducingArgs, build=InducingAttention.from_args,
                  impl="reference")
    register_kind(name="luna", args=LunaArgs, build=LunaAttention.from_args, impl="reference")
