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
``torch.export`` infers, ``Dim.AUTO``). Compiling takes C++ compilation
time: tens of seconds for a small model on CPU.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from txdsl.backends import BackendOptions, Outputs, output_tensors
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


def dynamic_shapes(example_inputs: dict[str, Any], auto: bool) -> dict[str, dict[int, Any]]:
    """Batch (dim 0) of every input and the length (dim 1) of 2-D token inputs symbolic.

    Inputs of one sequence share its length; ``decoder_*`` inputs have their own.
    """
    from torch.export import Dim

    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if auto:
            return Dim.AUTO
        return dims.setdefault(name, Dim(name, min=1))

    shapes: dict[str, dict[int, Any]] = {}
    for key, value in example_inputs.items():
        spec = {0: dim("batch")}
        if value.ndim == 2 and not value.is_floating_point():
            spec[1] = dim("decoder_seq" if key.startswith("decoder_") else "seq")
        shapes[key] = spec
    return shapes


class AOTModule:
    """A loaded ``model.pt2``, called like the model: keyword tensors in, outputs out."""

    def __init__(self, runner: Any, path: Path, tmp: tempfile.TemporaryDirectory | None = None):
        self.runner = runner
        self.path = path
        self._tmp = tmp  # keeps a package not yet saved to an artifact alive

    def __call__(self, **inputs: Any) -> Outputs:
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
                                       dynamic_shapes=dynamic_shapes(example_inputs, auto=False))
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
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs=dict(options.inductor_configs))
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path, tmp)

    def save(self, lowered: AOTModule, directory: Path) -> None:
        shutil.copyfile(lowered.path, Path(directory) / PACKAGE)

    def load(self, directory: Path, module: Any, options: AOTOptions) -> AOTModule:
        import torch

        path = Path(directory) / PACKAGE
        return AOTModule(torch._inductor.aoti_load_package(str(path)), path)
