"""Linearized attention: ``linear``, ``performer``, ``cosformer`` (issue 9).

Each kind has two implementations with one parameter layout: ``reference``
(the naive recurrent form for causal attention, token by token) and
``chunked`` (preferred: dense inside chunks, recurrent between them); both
decode with the constant-size :class:`~.state.RecurrentState`.
"""

from __future__ import annotations

from .base import LinearizedArgs, LinearizedAttention
from .cosformer import CosformerArgs, CosformerAttention
from .linear import LinearArgs, LinearAttention
from .performer import PerformerArgs, PerformerAttention
from .state import RecurrentState

__all__ = ["CosformerArgs", "CosformerAttention", "LinearArgs", "LinearAttention",
           "LinearizedArgs", "LinearizedAttention", "PerformerArgs", "PerformerAttention",
           "RecurrentState", "register_linearized"]

KINDS = {"linear": (LinearArgs, LinearAttention), "performer": (PerformerArgs, PerformerAttention),
         "cosformer": (CosformerArgs, CosformerAttention)}


def register_linearized(register) -> None:
    """Register every linearized kind: ``reference`` (recurrent) and ``chunked``."""
    for name, (args, module) in KINDS.items():
        register(name=name, args=args, build=module.builder("recurrent"), impl="reference",
                 priority=0)
        register(name=name, args=args, build=module.builder("chunked"), impl="chunked",
                 priority=10)
