"""``inductor``: ``torch.compile`` with the Inductor compiler.

Options map onto ``torch.compile``'s arguments (``--option mode=max-autotune-no-cudagraphs``,
``--option dynamic=true``, ``--option options.max_autotune=true``); ``mode`` and
``options`` exclude each other, as in ``torch.compile``. Compilation is lazy in
PyTorch; with ``warmup`` (the default) ``lower`` runs the example once so that
a compile error surfaces during the build, not at the first real call.

The artifact holds the weights and the IR only: loading it rebuilds the model
and compiles it again (Inductor's caches make that quick on the same machine).

Inputs are checked in Python before the compiled code runs (a forward
pre-hook on the compiled module, :func:`guard`): inside the compiled graph
only the shape and dtype checks of :mod:`txdsl.runtime.boundary` remain, and
a bad id in a compiled kernel aborts the process instead of raising.

``generate`` on the compiled module (and on ``txdsl.load``'s result) decodes
with a compiled decode step (:meth:`InductorBackend.decode_step`,
:mod:`txdsl.runtime.decode`) instead of the eager model.

Forward fusion for inference builds (issue 15): ``freezing=true`` turns on
Inductor's freezing, which applies only to calls without autograd
(``torch.no_grad``/``inference_mode``; a training call compiles the ordinary
graph): weights become constants, folded and prepacked for oneDNN's GEMMs.
Weights changed in place afterwards are seen (the frozen graph is recompiled;
tested). ``concat_linear=true`` (needs freezing) lets Inductor concatenate the
q, k and v projections of one input into one GEMM at compile time, so the
parameters and weights files keep their separate ``q_proj``/``k_proj``/``v_proj``
(Hugging Face layouts unchanged). Both are off by default: see the README's
"Against the peers" for what was measured.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from txdsl.backends import BackendOptions
from txdsl.sdk.targets import Target


class InductorOptions(BackendOptions):
    mode: Literal["default", "reduce-overhead", "max-autotune",
                  "max-autotune-no-cudagraphs"] | None = None
    fullgraph: bool = False  # error on a graph break instead of falling back to Python
    dynamic: bool | None = None  # None: PyTorch decides after seeing a shape change
    options: dict[str, Any] | None = None  # Inductor config, e.g. {"max_autotune": true}
    warmup: bool = True  # compile during the build by running the example once
    # Forward fusion for inference (bench/vs_peers.py measures them; README "Against the peers")
    freezing: bool = False  # Inductor freezing: weights as constants, prepacked for oneDNN
    concat_linear: bool = False  # with freezing, CPU: q/k/v matmuls of one input as one GEMM

    @model_validator(mode="after")
    def _mode_or_options(self) -> "InductorOptions":
        if self.mode is not None and self.options:
            raise ValueError("give either 'mode' or 'options', not both (as torch.compile)")
        if self.concat_linear and not self.freezing:
            raise ValueError("concat_linear needs freezing=true (Inductor fuses the q/k/v "
                             "linears only when their weights are frozen constants)")
        return self

    def inductor_config(self) -> dict[str, Any] | None:
        """What goes to ``torch.compile(options=...)``: ``options`` plus the fusion flags
        (with ``mode`` set too, the mode's own settings are spelled out and joined)."""
        extra: dict[str, Any] = {}
        if self.freezing:
            extra["freezing"] = True
        if self.concat_linear:
            extra["cpp.enable_concat_linear"] = True
        if not extra:
            return dict(self.options) if self.options else None
        if self.mode not in (None, "default"):
            import torch._inductor

            extra = {**torch._inductor.list_mode_options(self.mode), **extra}
        return {**(self.options or {}), **extra}

    def compile_mode(self) -> str | None:
        """``torch.compile``'s ``mode``, unless :meth:`inductor_config` spelled it out."""
        return None if (self.freezing or self.concat_linear) else self.mode


def _compiler_missing(target: Target | None) -> str | None:
    if target is not None and target.device == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "needs the 'triton' package to generate CUDA kernels"
        return None
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "needs a C++ compiler (g++, c++ or clang++) on PATH for CPU kernels"
    return None


class InductorBackend:
    name = "inductor"
    description = "torch.compile with Inductor (mode, fullgraph, dynamic, options)"
    options_model = InductorOptions
    self_contained = False

    def available(self, target: Target | None = None) -> str | None:
        return _compiler_missing(target)

    def compile(self, module: Any, options: InductorOptions) -> Any:
        import torch

        from txdsl.runtime.decode import own_forward

        own_forward(module)  # this build's graphs on a code object of its own
        compiled = torch.compile(module, backend="inductor", fullgraph=options.fullgraph,
                                 dynamic=options.dynamic, mode=options.compile_mode(),
                                 options=options.inductor_config())
        return with_generate(guard(compiled, module), module, self.decode_step(module, options))

    def decode_step(self, module: Any, options: InductorOptions) -> Any:
        """The compiled decode step ``generate`` uses for ``module`` (None: not a decoder).

        ``torch.compile(..., fullgraph=True, dynamic=False)`` with this build's
        ``mode``/``options``; on CUDA without a mode, ``reduce-overhead`` (CUDA graphs).
        """
        if getattr(module, "decoder", None) is None or module.is_encoder_decoder:
            return None
        from txdsl.runtime.decode import CompiledStep

        param = next(module.parameters(), None)
        device = param.device.type if param is not None else "cpu"
        return CompiledStep(backend="inductor", mode=options.compile_mode(),
                            options=options.inductor_config(),
                            device=device)

    def lower(self, module: Any, example_inputs: dict, options: InductorOptions) -> Any:
        import torch

        compiled = self.compile(module, options)
        if options.warmup and example_inputs:
            with torch.no_grad():
                compiled(**example_inputs)
        return compiled

    def save(self, lowered: Any, directory: Path) -> None:
        """Nothing beyond the weights and the manifest: loading compiles again."""

    def load(self, directory: Path, module: Any, options: InductorOptions) -> Any:
        return self.compile(module, options)


def with_generate(compiled: Any, module: Any, step: Any) -> Any:
    """``compiled.generate`` decodes with ``step`` (the compiled step), not the eager model."""
    if step is None or compiled is module:
        return compiled
    from txdsl.runtime.decode import attach_generate

    return attach_generate(compiled, module, step)


def guard(compiled: Any, module: Any) -> Any:
    """Check ``module``'s inputs (a TxModel's boundary) before ``compiled`` runs.

    A forward pre-hook of the compiled module runs in Python, outside the
    compiled frame, so every check, data-dependent ones included, runs there;
    the compiled cache can't grow, so cache slots must fit its capacity.
    """
    limits = getattr(module, "limits", None)
    if compiled is module or limits is None:  # eager already checks; not a TxModel
        return compiled
    import inspect

    from txdsl.runtime.boundary import check_inputs

    signature = inspect.signature(module.forward)  # once: binding per call cost ~0.2 ms
    names = frozenset(signature.parameters)

    def check(_: Any, args: tuple, kwargs: dict) -> None:
        inputs = (kwargs if not args and kwargs.keys() <= names
                  else dict(signature.bind(*args, **kwargs).arguments))  # TypeError as Python's
        check_inputs(limits, inputs, dtype=module._dtype(), cache_grows=False)

    compiled.register_forward_pre_hook(check, with_kwargs=True)
    return compiled
