"""Content-based sparse attention: which keys a query sees depends on the vectors, not positions.

- ``topk``: explicit sparse attention (Zhao et al. 2019), the k highest scores per query;
- ``lsh``: Reformer's shared-QK attention within locality-sensitive-hash buckets
  (Kitaev et al. 2020);
- ``routing``: Routing Transformer's attention within online k-means clusters
  (Roy et al. 2021).

Each is one file; :mod:`.common` holds the score helpers they share.
"""

from __future__ import annotations

from .lsh import LSHArgs, LSHAttention
from .routing import RoutingArgs, RoutingAttention
from .topk import TopKArgs, TopKAttention

__all__ = ["LSHArgs", "LSHAttention", "RoutingArgs", "RoutingAttention", "TopKArgs",
           "TopKAttention"]


def register_content(register) -> None:
    """Register the content-based kinds (called from ``txdsl_attention.register_attention``)."""
    register(name="topk", args=TopKArgs, build=TopKAttention.from_args, impl="reference",
             priority=0)
    register(name="lsh", args=LSHArgs, build=LSHAttention.from_args, impl="reference",
             priority=0)
    register(name="routing", args=RoutingArgs, build=RoutingAttention.from_args,
             impl="reference", priority=0)
