"""``tensorrt``: Torch-TensorRT's dynamo path (``torch_tensorrt.compile``).

Needs an NVIDIA GPU (``torch.cuda.is_available()``) and the ``torch_tensorrt``
package; without either it is refused before any work, with the reason.
Precision follows the build's dtype unless ``precision`` says otherwise.
The artifact keeps the weights and the IR; loading rebuilds the model and
compiles it again for the GPU at hand (TensorRT engines are tied to one GPU
model and TensorRT version, so a saved engine would not travel anyway).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from txdsl.backends import BackendOptions
from txdsl.sdk.targets import Target


class TensorRTOptions(BackendOptions):
    precision: Literal["float32", "float16", "bfloat16"] | None = None  # None: the build dtype
    min_block_size: int = 3  # smallest subgraph handed to TensorRT
    workspace_size: int = 0  # bytes of scratch for TensorRT; 0: its default
    optimization_level: int | None = None  # TensorRT builder level, 0-5


def _missing(target: Target | None) -> list[str]:
    import torch

    out = []
    if not torch.cuda.is_available():
        out.append("needs CUDA: torch.cuda.is_available() is False")
    if importlib.util.find_spec("torch_tensorrt") is None:
        out.append("needs the 'torch_tensorrt' package (pip install torch-tensorrt)")
    if target is not None and target.device != "cuda":
        out.append(f"needs --device cuda (the build is for {target.device})")
    return out


class TensorRTBackend:
    name = "tensorrt"
    description = "Torch-TensorRT (dynamo): TensorRT engines for NVIDIA GPUs"
    options_model = TensorRTOptions
    self_contained = False

    def available(self, target: Target | None = None) -> str | None:
        return "; ".join(_missing(target)) or None

    def lower(self, module: Any, example_inputs: dict, options: TensorRTOptions) -> Any:
        import torch
        import torch_tensorrt

        dtype = next(p.dtype for p in module.parameters()) if options.precision is None \
            else getattr(torch, options.precision)
        extra: dict[str, Any] = {}
        if options.workspace_size:
            extra["workspace_size"] = options.workspace_size
        if options.optimization_level is not None:
            extra["optimization_level"] = options.optimization_level
        return torch_tensorrt.compile(
            module.eval(), ir="dynamo", arg_inputs=(), kwarg_inputs=dict(example_inputs),
            enabled_precisions={dtype}, min_block_size=options.min_block_size, **extra)

    def save(self, lowered: Any, directory: Path) -> None:
        """Nothing beyond the weights and the manifest: engines are rebuilt on load."""

    def load(self, directory: Path, module: Any, options: TensorRTOptions) -> Any:
        import torch

        # Lazy: the engine is built at the first call, for the shapes it sees.
        return torch.compile(module.eval(), backend="tensorrt",
                             options={"enabled_precisions": {next(module.parameters()).dtype},
                                      "min_block_size": options.min_block_size})
