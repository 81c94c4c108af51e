"""``parallelize(model, mesh, tp=..., fsdp=...)``: the spec's plan applied with PyTorch's engine.

1. Tensor parallelism (``tp``): the plan derived from the IR
   (:func:`txdsl.parallel.plan.model_plan`) goes to ``parallelize_module`` in
   one call; each split module's counted attributes become local
   (``heads``/``kv_heads`` divided by the TP size, so ``view(B, T, heads, -1)``
   and the decode state see this rank's heads; replicated K/V keep the head
   their rank's query heads read); an attention reading the
   stack's position bias gets its rank's heads of it; a tied LM head is
   re-tied to the embedding's new (sharded) parameter, which
   ``parallelize_module`` would otherwise have copied.
2. Fully sharded data parallelism (``fsdp``): FSDP2's ``fully_shard`` on each
   layer (unique modules: a shared ALBERT layer once), then on the model.

With a 2-D mesh, TP runs inside a node and FSDP across (``tp="tp", fsdp="dp"``).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..runtime import Layer, TxModel
from .plan import TOKENS, check_parallel, model_plan
from .styles import parallel_style, slice_bias_heads, take_kv_group

MeshDim = DeviceMesh | str | bool | None


def init_mesh(*, tp: int = 1, fsdp: int = 1, device: str = "cpu") -> DeviceMesh:
    """A ``(fsdp, tp)`` mesh named ``("dp", "tp")`` over ``fsdp * tp`` processes
    (``torch.distributed`` initialised, e.g. by ``torchrun``)."""
    return init_device_mesh(device, (fsdp, tp), mesh_dim_names=("dp", "tp"))


def _submesh(mesh: DeviceMesh, dim: MeshDim, what: str) -> DeviceMesh | None:
    if dim is None or dim is False:
        return None
    if isinstance(dim, DeviceMesh):
        return dim
    if dim is True:
        if mesh.ndim != 1:
            raise ValueError(f"{what}=True needs a 1-D mesh; this one has dims "
                             f"{mesh.mesh_dim_names}: pass {what}='<dim name>'")
        return mesh
    if mesh.mesh_dim_names is None or dim not in mesh.mesh_dim_names:
        raise ValueError(f"{what}={dim!r} is not a dimension of the mesh "
                         f"(its dims: {mesh.mesh_dim_names})")
    return mesh[dim]


def parallelize(model: TxModel, mesh: DeviceMesh, *, tp: MeshDim = None, fsdp: MeshDim = None,
                registry: Any = None, reshard_after_forward: bool = True) -> TxModel:
    """Shard ``model`` (a built :class:`TxModel`, the same weights on every rank) in place.

    ``tp``/``fsdp``: ``True`` (all of a 1-D ``mesh``), a dimension name of a 2-D
    one, or a ``DeviceMesh``. The tensor-parallel size must divide what the
    components declare (``heads``, ``kv_heads``): a :class:`~txdsl.errors.SpecError`
    at the spec's argument otherwise, before anything is changed.
    """
    tp_mesh, dp_mesh = _submesh(mesh, tp, "tp"), _submesh(mesh, fsdp, "fsdp")
    if tp_mesh is None and dp_mesh is None:
        raise ValueError("parallelize: give tp=... and/or fsdp=...")
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    if tp_mesh is not None and tp_mesh.size() > 1:
        check_parallel(model.ir, registry, tp=tp_mesh.size())
        _tensor_parallel(model, tp_mesh, registry)
    if dp_mesh is not None:
        from torch.distributed.fsdp import fully_shard

        seen: set[int] = set()
        for layer in model.modules():
            if isinstance(layer, Layer) and id(layer) not in seen:
                seen.add(id(layer))
                fully_shard(layer, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)
        fully_shard(model, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)
    return model


def _tensor_parallel(model: TxModel, mesh: DeviceMesh, registry: Any) -> None:
    from torch.distributed.tensor.parallel import parallelize_module

    n = mesh.size()
    entries = [e for e in model_plan(model.ir, registry, n) if _exists(model, e.path)]
    tokens = model.get_submodule(TOKENS) if _exists(model, TOKENS) else None
    token_weight = getattr(tokens, "weight", None)
    # Heads holding the embedding's very parameter: re-tied after the split. An undeclared
    # (replicated) module holding it keeps the embedding replicated too.
    tied = [e.path for e in entries if token_weight is not None and e.path != TOKENS
            and any(p is token_weight for p in model.get_submodule(e.path).parameters())]
    if any(not (e.plan and e.plan.styles) for e in entries if e.path in tied):
        entries = [e for e in entries if e.path != TOKENS]
        tied = []
    plan: dict[str, Any] = {}
    for e in entries:
        for sub, style in (e.plan.styles.items() if e.plan is not None else ()):
            plan[f"{e.path}.{sub}" if sub else e.path] = parallel_style(style)
    parallelize_module(model, mesh, plan)
    for e in entries:
        if e.plan is None:
            continue
        module = model.get_submodule(e.path)
        for attr, value in e.plan.local.items():
            setattr(module, attr, value // n)  # this rank's heads
        for attr, value in e.plan.fixed.items():
            setattr(module, attr, value)
        for sub, kv_heads in e.plan.kv_replicated.items():
            take_kv_group(module.get_submodule(sub), kv_heads, mesh)
        if e.plan.bias_heads and "heads" in e.plan.local:
            slice_bias_heads(module, e.plan.local["heads"], mesh)
    for path in tied:  # parallelize_module made the head its own copy: one parameter again
        model.get_submodule(path).register_parameter("weight", model.get_submodule(TOKENS).weight)
    model.tensor_parallel = n  # the tensor-parallel size it now runs under


def _exists(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True
