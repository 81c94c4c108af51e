"""Position-based sparse attention (Lin et al. 2021, §4.1.1): one mask description, four
implementations.

Kinds: ``local`` (sliding window), ``dilated``, ``strided`` and ``fixed`` (Sparse
Transformer), ``block`` (block-local), ``global``, ``random``, ``sparse`` (a union:
BigBird, Star-Transformer) and ``longformer`` (window + global with separate global
projections). Each is registered with the implementations

- ``reference`` (priority 0): the dense mask, the definition;
- ``sdpa`` (5): SDPA with the dense additive mask (fused, T x S memory; also what
  ``aot``/``onnx`` builds get);
- ``blocked`` (10): pure PyTorch over the needed tiles only (O(T * window)),
  trains on CPU; eager and inductor builds;
- ``flex`` (20): FlexAttention with a ``BlockMask``; CUDA builds (on CPU torch 2.13
  has no backward and can't compile a mask made inside the model).
"""

from __future__ import annotations

from txdsl.sdk import Targets

from ..flex import flex_supports
from .args import BlockArgs, DilatedArgs, FixedArgs, GlobalArgs, LocalArgs, StridedArgs
from .blocked import BlockedSparseAttention
from .longformer import LongformerBlocked, LongformerFlex, LongformerReference, LongformerSDPA
from .module import FlexSparseAttention, SDPASparseAttention, SparseAttention
from .unions import LongformerArgs, RandomArgs, SparseArgs

KINDS = {"local": LocalArgs, "dilated": DilatedArgs, "strided": StridedArgs,
         "fixed": FixedArgs, "block": BlockArgs, "global": GlobalArgs, "random": RandomArgs,
         "sparse": SparseArgs}
BLOCKED_TARGETS = Targets(backends=frozenset({"eager", "inductor"}))


def register_sparse(register) -> None:
    """Register every sparse kind with its four implementations."""
    modules = {name: (SparseAttention, SDPASparseAttention, BlockedSparseAttention,
                      FlexSparseAttention) for name in KINDS}
    modules["longformer"] = (LongformerReference, LongformerSDPA, LongformerBlocked,
                             LongformerFlex)
    for name, (ref, sdpa, blocked, flex) in modules.items():
        args = KINDS.get(name, LongformerArgs)
        register(name=name, args=args, build=ref.from_args, impl="reference", priority=0)
        register(name=name, args=args, build=sdpa.from_args, impl="sdpa", priority=5)
        register(name=name, args=args, build=blocked.from_args, impl="blocked",
                 targets=BLOCKED_TARGETS, priority=10)
        register(name=name, args=args, build=flex.from_args, impl="flex",
                 targets=Targets(check=flex_supports), priority=20)
