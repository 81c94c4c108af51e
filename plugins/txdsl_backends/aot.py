"""``aot``: ``torch.export`` + AOTInductor, packaged as ``model.pt2``.

The package is self-contained: ``torch._inductor.aoti_load_package`` runs it
without the spec, the plugins or ``weights.safetensors`` (it carries its own
copy of the weights), so a deployment needs only PyTorch::

    model = torch._inductor.aoti_load_package("artifacts/gpt2/model.pt2")
    out = model(input_ids=ids)  # {"logits": ...}

It takes exactly the keyword inputs it was exported with (the manifest's
``inputs``) and returns a dict of tensors. With ``dynamic`` (the default)
batch and sequence lengths are symbolic, from 1 upwards (a model that can't
take every length, e.g. learned positions, falls back to what
``torch.export`` infers, ``Dim.AUTO``); sequence lengths go up to the
model's context. Compiling takes C++ compilation time: tens of seconds for a
small model on CPU.

Inputs: :class:`AOTModule` (what ``txdsl.build`` and ``txdsl.load`` return)
checks every input in Python before the package runs (:class:`PackageInputs`:
the exported names, dtypes and fixed dimensions, then the model boundary of
:mod:`txdsl.runtime.boundary`), because a bad id inside a compiled kernel
aborts the process. A bare ``model.pt2`` checks less: the id range checks
are in the exported program (``torch._check``: a ``RuntimeError``), and its
dtype, rank and length bounds only when run with ``AOTI_RUNTIME_CHECK_INPUTS=1``.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from txdsl.backends import BackendOptions, Outputs, input_spec, output_tensors
from txdsl.sdk.targets import Target

from .inductor import _compiler_missing

log = logging.getLogger("txdsl.backends.aot")
PACKAGE = "model.pt2"


class AOTOptions(BackendOptions):
    dynamic: bool = True  # symbolic batch and sequence lengths
    strict: bool = False  # torch.export strict mode (trace with TorchDynamo)
    inductor_configs: dict[str, Any] = {}  # passed to aoti_compile_and_package


def _exportable(module: Any, names: list[str]) -> Any:
    """``module`` with a forward of keyword-only ``names`` returning a dict of tensors.

    ``torch.export`` needs a signature naming each input (not ``**inputs``) and
    outputs it can flatten (a dict, not the model's own output class).
    """
    from torch import nn

    class Exportable(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> dict[str, Any]:
            return output_tensors(self.inner(**inputs))

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names]
    Exportable.forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return Exportable(module)


def dynamic_shapes(example_inputs: dict[str, Any], auto: bool,
                   context: int | None = None) -> dict[str, dict[int, Any]]:
    """Batch (dim 0) of every input and the length (dim 1) of 2-D token inputs symbolic.

    Inputs of one sequence share its length (1 to ``context``); ``decoder_*``
    inputs have their own.
    """
    from torch.export import Dim

    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if auto:
            return Dim.AUTO
        top = context if name != "batch" and context is not None else None
        return dims.setdefault(name, Dim(name, min=1, max=top) if top else Dim(name, min=1))

    shapes: dict[str, dict[int, Any]] = {}
    for key, value in example_inputs.items():
        spec = {0: dim("batch")}
        if value.ndim == 2 and not value.is_floating_point():
            spec[1] = dim("decoder_seq" if key.startswith("decoder_") else "seq")
        shapes[key] = spec
    return shapes


class PackageInputs:
    """What a package takes: the inputs it was exported with, and the model's limits.

    ``spec``: ``{name: {"shape": [...], "dtype": "int64"}}`` (the manifest's
    ``inputs``); with ``dynamic`` the batch (dim 0) and the length of 2-D
    integer inputs (dim 1) vary, every other dimension is fixed.
    """

    def __init__(self, spec: dict[str, dict[str, Any]], limits: Any, dynamic: bool):
        self.spec, self.limits, self.dynamic = spec, limits, dynamic

    @classmethod
    def from_manifest(cls, manifest: Any, dynamic: bool) -> "PackageInputs":
        from txdsl.ir import ModelIR
        from txdsl.runtime.boundary import Limits

        return cls(manifest.inputs, Limits.from_ir(ModelIR.model_validate(manifest.ir)), dynamic)

    def varying(self, name: str, rank: int, floating: bool) -> set[int]:
        if not self.dynamic:
            return set()
        return {0, 1} if rank == 2 and not floating else {0}

    def check(self, inputs: dict[str, Any]) -> None:
        import torch

        from txdsl.runtime.boundary import check_inputs

        names = ", ".join(self.spec)
        for name in inputs:
            if name not in self.spec:
                raise TypeError(f"this aot package takes {names} (what it was exported with), "
                                f"not {name}")
        for name, want in self.spec.items():
            if name not in inputs:
                raise TypeError(f"this aot package needs {name} (it takes {names})")
            value = inputs[name]
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            dtype = getattr(torch, want["dtype"])
            if value.dtype != dtype:
                raise TypeError(f"{name} has dtype {value.dtype}, but this aot package was "
                                f"exported for {dtype}")
            shape = want["shape"]
            if value.ndim != len(shape):
                raise ValueError(f"{name} must have {len(shape)} dimensions, got shape "
                                 f"{tuple(value.shape)}")
            fixed = set(range(len(shape))) - self.varying(name, len(shape), dtype.is_floating_point)
            if any(value.shape[d] != shape[d] for d in fixed):
                want_shape = tuple("*" if d not in fixed else n for d, n in enumerate(shape))
                raise ValueError(f"{name} must have shape {want_shape} (* varies), got "
                                 f"{tuple(value.shape)}")
        floating = [getattr(torch, w["dtype"]) for w in self.spec.values()
                    if getattr(torch, w["dtype"]).is_floating_point]
        check_inputs(self.limits, inputs, dtype=floating[0] if floating else None,
                     cache_grows=False)


class AOTModule:
    """A loaded ``model.pt2``, called like the model: keyword tensors in, outputs out.

    With ``inputs`` (how ``txdsl.build`` and ``txdsl.load`` make it), every
    call is checked first (:class:`PackageInputs`)."""

    def __init__(self, runner: Any, path: Path, tmp: tempfile.TemporaryDirectory | None = None,
                 inputs: PackageInputs | None = None):
        self.runner = runner
        self.path = path
        self._tmp = tmp  # keeps a package not yet saved to an artifact alive
        self.inputs = inputs

    def __call__(self, *args: Any, **inputs: Any) -> Outputs:
        if args:
            raise TypeError(f"an aot package takes keyword inputs only (input_ids=...), got "
                            f"{len(args)} positional")
        if self.inputs is not None:
            self.inputs.check(inputs)
        return Outputs(self.runner(**inputs))

    def eval(self) -> "AOTModule":  # already inference-only; for nn.Module-like callers
        return self

    def __repr__(self) -> str:
        return f"AOTModule({self.path})"


class AOTBackend:
    name = "aot"
    description = "torch.export + AOTInductor: a self-contained model.pt2"
    options_model = AOTOptions
    self_contained = True

    def available(self, target: Target | None = None) -> str | None:
        return _compiler_missing(target)

    def export(self, module: Any, example_inputs: dict, options: AOTOptions) -> Any:
        import torch

        wrapped = _exportable(module, list(example_inputs)).eval()
        if not options.dynamic:
            return torch.export.export(wrapped, (), kwargs=example_inputs, strict=options.strict)
        try:
            return torch.export.export(wrapped, (), kwargs=example_inputs, strict=options.strict,
                                       dynamic_shapes=dynamic_shapes(
                                           example_inputs, auto=False,
                                           context=getattr(module, "context", None)))
        except torch._dynamo.exc.UserError as exc:  # a length the model can't take
            log.info("aot: lengths from 1 up don't export (%s); letting torch.export infer them",
                     str(exc).splitlines()[0])
            return torch.export.export(wrapped, (), kwargs=example_inputs, strict=options.strict,
                                       dynamic_shapes=dynamic_shapes(example_inputs, auto=True))

    def lower(self, module: Any, example_inputs: dict, options: AOTOptions) -> AOTModule:
        import torch

        program = self.export(module, example_inputs, options)
        tmp = tempfile.TemporaryDirectory(prefix="txdsl-aot-")
        path = Path(tmp.name) / PACKAGE
        # Without it, AOTI_RUNTIME_CHECK_INPUTS=1 would refuse lengths of 1 (export's 0/1 rule).
        configs = {"aot_inductor.check_lowerbound": False, **options.inductor_configs}
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs=configs)
        inputs = None
        if getattr(module, "limits", None) is not None:
            inputs = PackageInputs(input_spec(example_inputs), module.limits, options.dynamic)
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path, tmp, inputs)

    def save(self, lowered: AOTModule, directory: Path) -> None:
        shutil.copyfile(lowered.path, Path(directory) / PACKAGE)

    def load(self, directory: Path, module: Any, options: AOTOptions) -> AOTModule:
        import torch

        from txdsl.back.artifact import read_manifest

        path = Path(directory) / PACKAGE
        inputs = PackageInputs.from_manifest(read_manifest(directory), options.dynamic)
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path, inputs=inputs)
