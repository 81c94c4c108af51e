"""Built-in backends: ``eager``, ``inductor``, ``aot``, ``onnx``, ``tensorrt``.

Registered through the ``txdsl`` entry-point group like any third-party
plugin. Each backend follows :class:`txdsl.backends.Backend`; none imports
its heavy dependency (torch's compiler, onnx, torch_tensorrt) until it is
asked to lower something, so listing plugins stays fast.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .aot import AOTBackend
from .eager import EagerBackend
from .inductor import InductorBackend
from .onnx import OnnxBackend
from .tensorrt import TensorRTBackend

__all__ = ["AOTBackend", "EagerBackend", "InductorBackend", "OnnxBackend", "TensorRTBackend"]


@hookimpl
def register_backends(register):
    for backend in (EagerBackend(), InductorBackend(), AOTBackend(), OnnxBackend(),
                    TensorRTBackend()):
        register(backend)
