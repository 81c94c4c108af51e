"""``aot``: ``torch.export`` + AOTInductor, packaged as ``model.pt2``.

The package is self-contained: ``torch._inductor.aoti_load_package`` runs it
without the spec, the plugins or ``weights.safetensors`` (it carries its own
copy of the weights), so a deployment needs only PyTorch::

    model = torch._inductor.aoti_load_package("artifacts/gpt2/model.pt2")
    out = model(input_ids=ids, attention_mask=mask)  # {"logits": ...}

It takes every input a deployed model needs (:func:`txdsl.back.inputs.serving_inputs`:
``input_ids`` and ``attention_mask``, ``token_type_ids`` where the
embedding has token types, ``decoder_input_ids``/``decoder_attention_mask``
for an encoder-decoder, ``pixel_values``, ``features``), all of them, by
keyword, as the manifest's ``inputs`` list them, and returns a dict of
tensors. With ``dynamic`` (the default) the ``batch``, ``sequence`` and
``decoder_sequence`` dimensions are symbolic, from 1 up to the model's
context (a model that can't take every length falls back to what
``torch.export`` infers, ``Dim.AUTO``; the manifest's ``axes`` then say
which stayed symbolic). Compiling takes C++ compilation time: tens of
seconds for a small model on CPU; the build cache
(:mod:`txdsl.back.build_cache`) keeps the package for the next build.

Inputs: :class:`AOTModule` (what ``txdsl.build`` and ``txdsl.load`` return)
checks every input in Python before the package runs
(:class:`txdsl.backends.InputSpec`: the exported names, dtypes and fixed
dimensions, one size per named dimension, then the model boundary of
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

from txdsl.backends import (BATCH, BackendOptions, InputSpec, Outputs, input_axes,
                            input_spec, output_tensors, saved_inputs)
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
    """Named symbolic dimensions (``batch``, ``sequence``, ``decoder_sequence``) of every input.

    Which dimension of which input varies is :func:`txdsl.backends.input_axes`;
    inputs of one sequence share its length (1 to ``context``); ``decoder_*``
    inputs have their own. ``auto``: ``Dim.AUTO`` everywhere (what
    ``torch.export`` infers, unnamed), for a model that can't take every length.
    """
    from torch.export import Dim

    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if auto:
            return Dim.AUTO
        top = context if name != BATCH and context is not None else None
        return dims.setdefault(name, Dim(name, min=1, max=top) if top else Dim(name, min=1))

    return {key: {d: dim(axis) for d, axis in
                  enumerate(input_axes(key, value.ndim, value.is_floating_point()))
                  if axis is not None}
            for key, value in example_inputs.items()}


def exported_spec(program: Any, example_inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's ``inputs`` of an exported program: shape, dtype, and as ``axes``
    the names of the dimensions that stayed symbolic (``None`` where export fixed one)."""
    import torch

    spec = input_spec(example_inputs, dynamic=True)
    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    for name, want in spec.items():
        val = values.get(name)
        if isinstance(val, torch.Tensor):
            want["axes"] = [a if not isinstance(size, int) else None
                            for a, size in zip(want["axes"], val.shape)]
    return spec


class PackageInputs(InputSpec):
    """What a package takes (:class:`txdsl.backends.InputSpec`), read from an artifact."""

    @classmethod
    def from_manifest(cls, manifest: Any, dynamic: bool) -> "PackageInputs":
        from txdsl.ir import ModelIR
        from txdsl.runtime.boundary import Limits

        return cls(manifest.inputs, Limits.from_ir(ModelIR.model_validate(manifest.ir)),
                   dynamic, "aot package")


class AOTModule:
    """A loaded ``model.pt2``, called like the model: keyword tensors in, outputs out.

    With ``inputs`` (how ``txdsl.build`` and ``txdsl.load`` make it), every
    call is checked first (:class:`txdsl.backends.InputSpec`); ``input_spec``
    is what the manifest records."""

    def __init__(self, runner: Any, path: Path, tmp: tempfile.TemporaryDirectory | None = None,
                 inputs: InputSpec | None = None):
        self.runner = runner
        self.path = path
        self._tmp = tmp  # keeps a package not yet saved to an artifact alive
        self.inputs = inputs

    @property
    def input_spec(self) -> dict[str, dict[str, Any]] | None:
        return self.inputs.spec if self.inputs is not None else None

    def __call__(self, *args: Any, **inputs: Any) -> Outputs:
        if self.inputs is not None:
            inputs = self.inputs.check(args, inputs)
        elif args:
            raise TypeError(f"an aot package takes keyword inputs only (input_ids=...), got "
                            f"{len(args)} positional")
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
        spec = (exported_spec(program, example_inputs) if options.dynamic
                else input_spec(example_inputs))
        inputs = InputSpec(spec, getattr(module, "limits", None), options.dynamic, "aot package")
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path, tmp, inputs)

    def save(self, lowered: AOTModule, directory: Path) -> None:
        shutil.copyfile(lowered.path, Path(directory) / PACKAGE)

    def load(self, directory: Path, module: Any, options: AOTOptions) -> AOTModule:
        """``directory``: an artifact, or a build-cache entry (``module`` then given)."""
        import torch

        path = Path(directory) / PACKAGE
        inputs = saved_inputs(directory, module, options.dynamic, "aot package")
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path, inputs=inputs)
