"""``onnx``: ``torch.onnx.export`` (the dynamo exporter) to ``model.onnx``.

Needs the ``onnx`` and ``onnxscript`` packages to export (``pip install
'txdsl[onnx]'``) and ``onnxruntime`` to run the result here. The graph's
inputs and outputs are named after the model's keyword inputs and output
fields (``input_ids`` -> ``logits``), so any ONNX runtime can call it
without the spec or the plugins. Weights larger than 2 GB go to an external
data file beside ``model.onnx``, which the artifact keeps too.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from txdsl.backends import BackendError, BackendOptions, Outputs, output_tensors
from txdsl.sdk.targets import Target

from .aot import _exportable, dynamic_shapes

MODEL = "model.onnx"


class OnnxOptions(BackendOptions):
    opset_version: int | None = None  # None: the exporter's default
    dynamic: bool = True  # symbolic batch and sequence lengths
    optimize: bool = True  # onnxscript's graph optimisations after export


class OnnxModule:
    """A ``model.onnx`` run by onnxruntime, called like the model."""

    def __init__(self, path: Path, tmp: tempfile.TemporaryDirectory | None = None):
        self.path = path
        self._tmp = tmp
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise BackendError(f"running {self.path.name} needs the 'onnxruntime' package "
                                   "(pip install onnxruntime); the file itself is written "
                                   "(txdsl build --no-run)") from None
            self._session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"])
        return self._session

    def __call__(self, **inputs: Any) -> Outputs:
        import torch

        session = self.session()
        feed = {i.name: inputs[i.name].detach().cpu().numpy() for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        return Outputs({n: torch.from_numpy(v) for n, v in zip(names, session.run(names, feed))})

    def eval(self) -> "OnnxModule":
        return self


class OnnxBackend:
    name = "onnx"
    description = "torch.onnx.export (dynamo) to model.onnx, run with onnxruntime"
    options_model = OnnxOptions
    self_contained = True

    def available(self, target: Target | None = None) -> str | None:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            names = " and ".join(f"'{m}'" for m in missing)
            return (f"needs the {names} package{'s' if len(missing) > 1 else ''} "
                    f"(pip install 'txdsl[onnx]')")
        return None

    def lower(self, module: Any, example_inputs: dict, options: OnnxOptions) -> OnnxModule:
        import torch

        with torch.no_grad():
            output_names = list(output_tensors(module(**example_inputs)))
        program = torch.onnx.export(
            _exportable(module, list(example_inputs)).eval(), (), kwargs=example_inputs,
            dynamo=True, input_names=list(example_inputs), output_names=output_names,
            opset_version=options.opset_version, optimize=options.optimize,
            dynamic_shapes=(dynamic_shapes(example_inputs, auto=True)
                            if options.dynamic else None))
        tmp = tempfile.TemporaryDirectory(prefix="txdsl-onnx-")
        path = Path(tmp.name) / MODEL
        program.save(str(path))
        return OnnxModule(path, tmp)

    def save(self, lowered: OnnxModule, directory: Path) -> None:
        import shutil

        for f in lowered.path.parent.iterdir():  # model.onnx and any external data beside it
            if f.is_file():
                shutil.copyfile(f, Path(directory) / f.name)

    def load(self, directory: Path, module: Any, options: OnnxOptions) -> OnnxModule:
        return OnnxModule(Path(directory) / MODEL)
