"""The decode step: one token per row over the static cache, eager or compiled once.

:func:`generate <txdsl.runtime.generate.generate>` runs the prompt (the
prefill) through the eager model, then calls a *step* once per new token:

    step(model, ids, positions, slot, cache, greedy) -> (B,) token ids | (B, V) logits

- ``ids`` ``(B, 1)``: the previous token of each row; ``positions`` ``(B, 1)``
  its position (``None``: the slot, when no row is padded); ``slot`` ``(1,)``
  the cache slot it writes; ``cache`` the model's preallocated
  :class:`~txdsl.runtime.cache.ModelCache` (planned: sized and its padding
  decided on the host before the loop);
- ``greedy``: return the argmax ``(B,)``, else the last position's logits
  ``(B, V)`` for the caller's sampler.

Every tensor has the same shape and dtype at every step and the host-side
flags (``greedy``, whether the batch is padded) are fixed for a whole call,
so :class:`CompiledStep` (``torch.compile(..., fullgraph=True,
dynamic=False)``) compiles once per batch size and cache capacity and never
again across steps. On CUDA it uses ``mode="reduce-overhead"`` (CUDA graphs):
the cache and the step's inputs are marked static addresses so the graph
may write them in place. :func:`eager_step` is the same step, uncompiled.

Two details that matter for speed (issue 15, GPT-2 small at batch 8):

- each :class:`CompiledStep` compiles its *own copy* of the step function.
  Dynamo keeps compiled graphs per code object and limits them (8 by
  default): with one shared function, every build, dtype and batch size of a
  process (a benchmark grid) piled its graphs onto one code object, each call
  walked the guards of the others, and past the limit steps silently ran
  eagerly;
- the greedy argmax runs *after* the compiled graph (one ATen call over the
  ``(B, V)`` logits): fused into the graph, Inductor's CPU reduction over a
  50257-token vocabulary ran one OpenMP parallel region per row (8 at batch 8),
  measured at ~15x ATen's argmax inside the step on the loaded test machine.
"""

from __future__ import annotations

import logging
import types
import warnings
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger("txdsl.decode")


def eager_step(model: Any, ids: Tensor, positions: Tensor | None, slot: Tensor, cache: Any,
               greedy: bool) -> Tensor:
    """One decoding step of ``model`` (a decoder-only ``TxModel``): logits of one position."""
    out = model(ids, position_ids=positions, past_key_values=cache, use_cache=True,
                cache_position=slot, logits_to_keep=1)
    logits = out.logits[:, -1]  # (B, V)
    return logits.argmax(dim=-1) if greedy else logits


class CompiledStep:
    """:func:`eager_step` through ``torch.compile``, compiled at its first call.

    ``backend``: ``"inductor"`` (what the inductor build uses) or another
    dynamo backend (tests use ``"aot_eager"``); ``mode``/``options`` as in
    ``torch.compile`` (default on CUDA: ``"reduce-overhead"``, CUDA graphs).
    If the model can't be traced as one graph, the step falls back to
    ``fullgraph=False`` with a warning (a graph break costs speed, not results).
    """

    def __init__(self, *, backend: str = "inductor", mode: str | None = None,
                 options: dict | None = None, device: str = "cpu", fullgraph: bool = True):
        if mode is None and not options and device == "cuda":
            mode = "reduce-overhead"
        self.backend, self.mode, self.options, self.device = backend, mode, options, device
        self.fullgraph = fullgraph
        self._compiled = self._compile(fullgraph)
        self._marked: set[int] = set()  # caches already marked static (CUDA graphs)

    def _compile(self, fullgraph: bool) -> Any:
        kw: dict[str, Any] = dict(backend=self.backend, fullgraph=fullgraph, dynamic=False)
        if self.backend == "inductor":
            kw.update(mode=self.mode, options=dict(self.options) if self.options else None)
        return torch.compile(_own_copy(eager_step), **kw)

    def _mark_static(self, cache: Any, *inputs: Tensor | None) -> None:
        """CUDA graphs replay fixed addresses: the cache tensors they write must stay put."""
        if self.device != "cuda" or id(cache) in self._marked:
            return
        stack = cache.stack
        tensors = [stack.key_padding, stack.key_positions, stack.length, *inputs]
        for state in stack.self_attention:
            tensors += [t for t in vars(state).values() if isinstance(t, Tensor)]
        for t in tensors:
            if t is not None:
                torch._dynamo.mark_static_address(t)
        self._marked.add(id(cache))

    def __call__(self, model: Any, ids: Tensor, positions: Tensor | None, slot: Tensor,
                 cache: Any, greedy: bool) -> Tensor:
        self._mark_static(cache, ids, positions, slot)
        if self.device == "cuda" and self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are read
        try:
            logits = self._compiled(model, ids, positions, slot, cache, False)  # (B, V)
        except torch._dynamo.exc.Unsupported as exc:
            if not self.fullgraph:
                raise
            warnings.warn(f"the decode step of {type(model).__name__} has a graph break "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}); compiling it "
                          "with fullgraph=False", RuntimeWarning, stacklevel=2)
            self.fullgraph = False
            self._compiled = self._compile(False)
            logits = self._compiled(model, ids, positions, slot, cache, False)
        return logits.argmax(dim=-1) if greedy else logits  # argmax outside: see the module doc


def _own_copy(fn: Any) -> Any:
    """``fn`` with a code object of its own: dynamo's compiled graphs (and its recompile
    limit) are per code object, so each compiled step keeps its graphs to itself."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def own_forward(module: Any) -> Any:
    """Give ``module`` a ``forward`` with a code object of its own, before it is compiled.

    ``torch.compile(module)`` keeps its graphs on the code object of the class's
    ``forward`` (``TxModel.forward``), shared by every model of the process, with the
    recompile limit (8) counted across all of them: the ninth shape, dtype or build
    compiled in one process (a benchmark grid, a sweep, a test session) ran eagerly
    with only a log warning. The copy behaves exactly as the class's method.
    """
    method = type(module).forward
    module.forward = types.MethodType(_own_copy(method), module)
    return module


def attach_generate(runnable: Any, model: Any, step: Any) -> Any:
    """Give ``runnable`` (a compiled module wrapping ``model``) a ``generate`` that decodes
    with ``step``; without it, attribute lookup would reach ``model.generate`` (eager)."""
    from .generate import generate

    def compiled_generate(input_ids: Tensor, max_new_tokens: int, **kwargs: Any) -> Tensor:
        """Decode with the compiled step; see :func:`txdsl.runtime.generate.generate`."""
        return generate(model, input_ids, max_new_tokens, step=step, **kwargs)

    # An instance attribute: OptimizedModule forwards unknown attributes to the module.
    runnable.__dict__["generate"] = compiled_generate
    runnable.__dict__["decode_step"] = step
    return runnable
