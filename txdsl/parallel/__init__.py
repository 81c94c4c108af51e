"""Tensor-parallel and fully sharded models from the spec, on ``torch.distributed``.

A spec describes the whole model before it is built, so the sharding plan is
derived from it: each component kind declares how its parameters split
(``tp_plan`` on its argument model, :mod:`txdsl.sdk.sharding`), and
:func:`parallelize` applies the plan with PyTorch's DeviceMesh, DTensor,
``parallelize_module`` and FSDP2's ``fully_shard``. :func:`check_parallel`
refuses an indivisible split at the spec's argument; :mod:`.memory` predicts
each rank's bytes (``txdsl show --tp N --fsdp M``); :mod:`.checkpoint` saves
and loads sharded weights through ``torch.distributed.checkpoint`` in
safetensors files (nothing is unpickled), at any world size.
"""

from __future__ import annotations

from .plan import Entry, check_parallel, model_plan

__all__ = ["Entry", "check_parallel", "init_mesh", "load_sharded", "model_plan", "parallelize",
           "save_sharded"]


def __getattr__(name: str):  # torch.distributed only when used
    if name in ("parallelize", "init_mesh"):
        from . import apply

        return getattr(apply, name)
    if name in ("save_sharded", "load_sharded"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'txdsl.parallel' has no attribute {name!r}")
