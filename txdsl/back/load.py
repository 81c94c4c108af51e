"""Loading an artifact: verify it, then run it as built or rebuild and re-lower it.

The format itself (manifest, hashes, weights, atomic writes) is
:mod:`txdsl.back.artifact`; rebuilding goes through the same stages as
:func:`txdsl.build` (select, construct, a backend's ``lower``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..ir import ModelIR
from .artifact import ArtifactError, Manifest, WeightsError, check_integrity, load_weights
from .builder import check_backend_conflict
from .backends import check_available, get_backend, make_target, parse_options
from .construct import construct
from .inputs import example_inputs
from .select import KernelPlan, select

if TYPE_CHECKING:
    from ..registry import Registry
    from ..sdk.targets import Target


@dataclass
class Artifact:
    """A loaded artifact: ``module`` is what to call (lowered for its backend)."""

    path: Path
    manifest: Manifest
    module: Any
    model: Any  # the rebuilt TxModel, or None when a self-contained backend ran alone
    backend: str

    @property
    def ir(self) -> ModelIR:
        return ModelIR.model_validate(self.manifest.ir)


def load_artifact(directory: str | os.PathLike, *, backend: str | None = None,
                  device: str | None = None, options: Any = None,
                  registry: "Registry | None" = None) -> Artifact:
    """Verify and load an artifact.

    ``backend``: ``None`` runs it as built (a self-contained backend, such as
    ``aot``, loads its files alone, without the spec or plugins); another name
    rebuilds the model from the manifest's IR and weights and lowers it with
    that backend (``"eager"``: the plain module). ``device`` overrides the
    device it was built for; ``options`` the backend options (default: those
    of the build for its own backend, the defaults for another).
    """
    directory = Path(directory)
    manifest = check_integrity(directory)
    name = backend or manifest.backend
    same = name == manifest.backend
    if options is None and same:
        options = manifest.backend_options
    if registry is None:  # a public entry point: the installed plugins
        from ..plugins import get_registry

        registry = get_registry()
    chosen = get_backend(name, registry)
    check_backend_conflict(name, registry)
    opts = parse_options(chosen, options)
    target = make_target(device or manifest.device, manifest.dtype, name)
    check_available(chosen, target)
    if same and manifest.self_contained and target.device == manifest.device:
        return Artifact(directory, manifest, chosen.load(directory, None, opts), None, name)

    model = _rebuild(directory, manifest, target, registry)
    if same and hasattr(chosen, "load"):
        runnable = chosen.load(directory, model, opts)
    else:
        ir = Artifact(directory, manifest, None, None, name).ir
        example = example_inputs(ir, registry, batch=2, device=target.device,
                                 dtype=manifest.dtype,
                                 full=bool(getattr(chosen, "self_contained", False)))
        runnable = chosen.lower(model, example, opts)
    return Artifact(directory, manifest, runnable, model, name)


def _rebuild(directory: Path, manifest: Manifest, target: "Target", registry: "Registry") -> Any:
    ir = ModelIR.model_validate(manifest.ir)
    try:
        plan = KernelPlan.model_validate(manifest.plan) if manifest.plan else None
    except ValidationError:
        plan = None
    if plan is None:
        plan = select(ir, target, registry=registry)
    else:
        _check_plan(plan, registry)
    model = construct(ir, plan, target=target, registry=registry, device=target.device,
                      dtype=manifest.dtype)
    if manifest.quantization is not None:  # the quantized modules, then their stored weights
        import torch

        from .quantize import quantize_model

        quantize_model(model, manifest.quantization.scheme, getattr(torch, manifest.dtype))
    try:
        load_weights(model, directory / manifest.weights.file)
    except WeightsError as exc:
        raise ArtifactError(str(exc)) from None
    return model.eval()


def _check_plan(plan: KernelPlan, registry: "Registry") -> None:
    """Refuse to rebuild with an implementation another plugin now provides."""
    for c in plan.choices:
        conflict = registry.conflict(c.family, c.kind)
        if conflict is not None:
            raise ArtifactError(f"{conflict.error()}; {conflict.hint()}")
        impl = next((i for i in registry.implementations(c.family, c.kind) if i.impl == c.impl),
                    None)
        if impl is not None and impl.plugin != c.plugin:
            raise ArtifactError(
                f"{c.family} '{c.kind}' was built with implementation '{c.impl}' of plugin "
                f"'{c.plugin}', but here plugin '{impl.plugin}' provides it; rebuild the "
                "artifact, or load it with the plugins it was built with")


def load(directory: str | os.PathLike, *, backend: str | None = None,
         device: str | None = None) -> Any:
    """Load an artifact directory: the model, ready to call with keyword inputs.

    See :func:`load_artifact` (which also returns the manifest).
    """
    return load_artifact(directory, backend=backend, device=device).module
