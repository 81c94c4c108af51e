"""txdsl: a compiler from declarative ``.tx`` Transformer specs to PyTorch modules.

The pipeline, one module per arrow::

    source -> parser -> lower -> resolve -> validate -> (estimate)
           -> select -> construct -> backend -> artifact

Public API: :func:`parse`, :func:`parse_file`, :func:`build`, :func:`load`,
:func:`from_hf` and :func:`to_hf` (Hugging Face checkpoints in and out),
and :class:`SpecError`, the one exception family for mistakes in a spec.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import SpecError, SpecErrors  # noqa: E402
from .ir import ModelIR  # noqa: E402
from .front.resolve import parse, parse_file, parse_all  # noqa: E402


def __getattr__(name: str):  # build/load pull in torch: import them lazily
    if name == "build":
        from .back.builder import build as value
    elif name == "load":
        from .back.load import load as value
    elif name == "parallelize":
        from .parallel.apply import parallelize as value
    elif name in ("from_hf", "to_hf"):
        from . import interop

        value = getattr(interop, name)
    else:
        raise AttributeError(f"module 'txdsl' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = ["ModelIR", "SpecError", "SpecErrors", "build", "from_hf", "load", "parse",
           "parse_all", "parse_file", "parallelize", "to_hf", "__version__"]
