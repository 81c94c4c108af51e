"""``onnx``: ``torch.onnx.export`` (the dynamo exporter) to ``model.onnx``.

Needs the ``onnx`` and ``onnxscript`` packages to export and ``onnxruntime``
to run the result here (``pip install 'txdsl[onnx]'``, pinned). The graph's
inputs are every input a deployed model takes
(:func:`txdsl.back.inputs.serving_inputs`: ``input_ids``,
``attention_mask``, ``token_type_ids``, ``decoder_input_ids``,
``decoder_attention_mask``, ``pixel_values`` or ``features``, as the model
has them), its outputs the model's output fields (``logits``,
``last_hidden_state``, ...), and the varying dimensions are named
``batch``, ``sequence`` and ``decoder_sequence``, so any ONNX runtime can
serve a padded batch of any size without the spec, the plugins or torch.
Weights larger than 2 GB go to an external data file beside ``model.onnx``,
which the artifact keeps too.

:class:`OnnxModule` (what ``txdsl.build`` and ``txdsl.load`` return) checks
every input (:class:`txdsl.backends.InputSpec`) before onnxruntime sees it.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from txdsl.backends import (BackendError, BackendOptions, InputSpec, Outputs, input_spec,
                            output_tensors, saved_inputs)
from txdsl.sdk.targets import Target

from .aot import _exportable, dynamic_shapes

log = logging.getLogger("txdsl.backends.onnx")
MODEL = "model.onnx"


class OnnxOptions(BackendOptions):
    opset_version: int | None = None  # None: the exporter's default
    dynamic: bool = True  # named symbolic batch and sequence lengths
    optimize: bool = True  # onnxscript's graph optimisations after export


class OnnxModule:
    """A ``model.onnx`` run by onnxruntime, called like the model (keyword tensors in,
    :class:`Outputs` of tensors out); ``inputs`` checks every call first."""

    def __init__(self, path: Path, tmp: tempfile.TemporaryDirectory | None = None,
                 inputs: InputSpec | None = None):
        self.path = path
        self._tmp = tmp
        self.inputs = inputs
        self._session: Any = None

    @property
    def files(self) -> list[Path]:
        """``model.onnx`` and its external data (``model.onnx.*``), if any: what an
        artifact keeps."""
        return sorted(p for p in self.path.parent.iterdir()
                      if p.is_file() and p.name.startswith(MODEL))

    @property
    def input_spec(self) -> dict[str, dict[str, Any]] | None:
        return self.inputs.spec if self.inputs is not None else None

    def session(self) -> Any:
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise BackendError(f"running {self.path.name} needs the 'onnxruntime' package "
                                   "(pip install 'txdsl[onnx]'); the file itself is written "
                                   "(txdsl build --no-run)") from None
            self._session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"])
        return self._session

    def __call__(self, *args: Any, **inputs: Any) -> Outputs:
        import torch

        if self.inputs is not None:
            inputs = self.inputs.check(args, inputs)
        elif args:
            raise TypeError(f"an onnx model takes keyword inputs only, got {len(args)} "
                            "positional")
        session = self.session()
        feed = {}
        for i in session.get_inputs():
            if i.name not in inputs:
                raise TypeError(f"this onnx model needs {i.name}")
            feed[i.name] = inputs[i.name].detach().cpu().numpy()
        names = [o.name for o in session.get_outputs()]
        return Outputs({n: torch.from_numpy(v) for n, v in zip(names, session.run(names, feed))})

    def eval(self) -> "OnnxModule":
        return self

    def __repr__(self) -> str:
        return f"OnnxModule({self.path})"


def graph_spec(program: Any, example_inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's ``inputs``: shape and dtype of each example input, and as ``axes`` the
    ONNX graph's symbolic dimension names (``batch``, ``sequence``; ``None`` where fixed)."""
    spec = input_spec(example_inputs, dynamic=True)
    graph = {v.name: v for v in program.model.graph.inputs}
    for name, want in spec.items():
        value = graph.get(name)
        if value is not None and value.shape is not None:
            want["axes"] = [None if isinstance(d, int) else str(d.value) for d in value.shape]
    return spec


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

    def export(self, module: Any, example_inputs: dict, options: OnnxOptions) -> Any:
        """The ``ONNXProgram``. If the exporter's decompositions fail with the fused
        attention kernels (torch 2.13 can't decompose an SDPA whose output it viewed, e.g.
        T5's cross-attention), export again with attention in its math form."""
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with torch.no_grad():
            output_names = list(output_tensors(module(**example_inputs)))
        shapes = (dynamic_shapes(example_inputs, auto=False,
                                 context=getattr(module, "context", None))
                  if options.dynamic else None)

        def export() -> Any:
            with warnings.catch_warnings():  # one per input sharing an axis: expected
                warnings.filterwarnings("ignore", message=r".*shares the same shape constraints")
                return torch.onnx.export(
                    _exportable(module, list(example_inputs)).eval(), (), kwargs=example_inputs,
                    dynamo=True, input_names=list(example_inputs), output_names=output_names,
                    opset_version=options.opset_version, optimize=options.optimize,
                    dynamic_shapes=shapes, verbose=False)

        try:
            return export()
        except Exception as exc:  # torch.onnx's ConversionError, or what it wraps
            log.info("onnx: export failed (%s); exporting attention in its math form",
                     str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            with sdpa_kernel([SDPBackend.MATH]):
                return export()

    def lower(self, module: Any, example_inputs: dict, options: OnnxOptions) -> OnnxModule:
        program = self.export(module, example_inputs, options)
        tmp = tempfile.TemporaryDirectory(prefix="txdsl-onnx-")
        path = Path(tmp.name) / MODEL
        program.save(str(path))
        spec = graph_spec(program, example_inputs) if options.dynamic \
            else input_spec(example_inputs)
        return OnnxModule(path, tmp, InputSpec(spec, getattr(module, "limits", None),
                                               options.dynamic, "onnx model"))

    def save(self, lowered: OnnxModule, directory: Path) -> None:
        for f in lowered.files:  # model.onnx and its external data, if any
            shutil.copyfile(f, Path(directory) / f.name)

    def load(self, directory: Path, module: Any, options: OnnxOptions) -> OnnxModule:
        """``directory``: an artifact, or a build-cache entry (``module`` then given)."""
        inputs = saved_inputs(directory, module, options.dynamic, "onnx model")
        return OnnxModule(Path(directory) / MODEL, inputs=inputs)
