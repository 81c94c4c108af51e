"""``build``: a spec to a model lowered for a backend, and optionally an artifact.

The stages, each shown with a spinner when stderr is a terminal::

    parse -> select -> construct -> lower -> write

Everything that can be refused is refused before the first stage: an unknown
or unavailable backend (with the reason, e.g. ``needs CUDA``), bad backend
options, an unknown dtype, ``cuda`` without CUDA, a missing weights file, an
output directory that is not an artifact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from pydantic import BaseModel

from .artifact import (ArtifactError, WeightsError, check_destination, load_weights,
                       sha256_file, write_artifact)
from .backends import (BackendError, BuildError, check_available, get_backend, input_spec,
                       make_target, parse_options)
from .build_cache import open_cache
from .inputs import example_inputs
from ..errors import SpecError
from ..ir import ModelIR
from ..sdk.targets import Target

if TYPE_CHECKING:
    import torch

    from ..registry import Registry
    from .select import KernelPlan

__all__ = ["ArtifactError", "BackendError", "Built", "BuildError", "WeightsError", "build"]

log = logging.getLogger("txdsl.build")
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts


@dataclass
class Built:
    """The result of :func:`build`. Calling it calls ``lowered``."""

    ir: ModelIR
    plan: "KernelPlan"
    module: Any  # the constructed TxModel (eager, with the weights)
    lowered: Any  # what the backend made of it: call it with keyword inputs
    backend: str
    options: BaseModel
    target: Target
    example_inputs: dict[str, "torch.Tensor"]  # what it was lowered with (batch 2)
    registry: "Registry"
    artifact: Path | None = None
    quantization: Any = None  # txdsl.back.artifact.QuantizationInfo of a --quantize build
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    cached: bool = False  # the compiled files came from the build cache (build_cache.py)
    cache_key: str | None = None  # the build-cache key, for a backend the cache keeps

    def __call__(self, **inputs: Any) -> Any:
        return self.lowered(**inputs)

    def generate(self, input_ids: "torch.Tensor", max_new_tokens: int,
                 **kwargs: Any) -> "torch.Tensor":
        """Decode with this build: the backend's compiled decode step when it has one
        (``inductor``), the eager step otherwise; keywords as
        :func:`txdsl.runtime.generate.generate`."""
        from ..runtime.generate import generate

        step = getattr(self.lowered, "decode_step", None)  # set by a compiling backend
        return generate(self.module, input_ids, max_new_tokens, step=step, **kwargs)

    def example(self, batch: int = 1, seed: int = 0) -> dict[str, "torch.Tensor"]:
        """Small random inputs of the right kind for this model (see :func:`example_inputs`)."""
        return example_inputs(self.ir, self.registry, batch=batch, device=self.target.device,
                              dtype=self.target.dtype, seed=seed)


# ---------------------------------------------------------------- progress


class _Stages:
    """Times each stage; shows a spinner and a tick per stage on a terminal."""

    def __init__(self, progress: bool | Callable[[str], None] | None):
        self.callback = progress if callable(progress) else None
        show = sys.stderr.isatty() if progress is None else progress is True
        self.console = None
        if show:
            from rich.console import Console

            self.console = Console(stderr=True)
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str, what: str) -> Iterator[None]:
        if self.callback is not None:
            self.callback(stage)
        log.info("%s: %s", stage, what)
        start = time.perf_counter()
        if self.console is not None:
            from rich.markup import escape

            what = escape(what)  # a path may hold [brackets]
        status = (self.console.status(f"{what}...") if self.console is not None
                  else contextlib.nullcontext())
        try:
            with status:
                yield
        except BaseException:
            if self.console is not None:
                self.console.print(f"[red]x[/red] {what}")
            raise
        seconds = self.timings[stage] = time.perf_counter() - start
        if self.console is not None:
            self.console.print(f"[green]✓[/green] {what} [dim]({seconds:.2f} s)[/dim]")


# ---------------------------------------------------------------- the build


def _spec_text(text: str, path: str) -> str:
    """The canonical (``txdsl fmt``) form of ``text``, or ``text`` if it can't be formatted."""
    try:
        from ..front.fmt import format_spec
        from ..front.lower import lower
        from ..front.source import source_from_text

        return format_spec(lower(source_from_text(text, path)))
    except Exception:  # formatting is a nicety: keep the source as written
        return text


def _resolve(spec: Any, model: str | None, registry: "Registry", base_dir: Any = None,
             ) -> tuple[ModelIR, str | None, str | None]:
    """(IR, spec text for the artifact or None, spec path or None)."""
    from ..front.resolve import parse, parse_file

    if isinstance(spec, ModelIR):
        return spec, None, None
    # Spec text always has a model body in braces; a path never needs one.
    is_path = isinstance(spec, os.PathLike) or (isinstance(spec, str) and "{" not in spec)
    if is_path:
        path = Path(spec)
        ir = parse_file(path, model=model, registry=registry)
        return ir, _spec_text(path.read_text(encoding="utf-8"), str(path)), str(path)
    if isinstance(spec, str):
        ir = parse(spec, base_dir, model=model, registry=registry)
        return ir, _spec_text(spec, "<string>"), None
    raise TypeError(f"spec must be a path, spec text or a ModelIR, not {type(spec).__name__}")


def available_memory(device: str) -> int | None:
    """Bytes free for new tensors on ``device`` (None: unknown)."""
    if device == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_backend_conflict(name: str, registry: "Registry") -> None:
    """Refuse a backend name two plugins register when nothing said which to use."""
    conflict = registry.conflict("backend", name)
    if conflict is not None:
        raise BackendError(f"{conflict.error()}; {conflict.hint()}")


def check_memory(ir: ModelIR, dtype: str, device: str, registry: "Registry") -> None:
    """Refuse, before allocating, a model whose weights alone can't fit in memory."""
    from ..front.estimate import DTYPE_BYTES, EstimateError, estimate

    try:
        need = estimate(ir, registry).params * DTYPE_BYTES.get(dtype, 4)
    except EstimateError as exc:  # a lying cost model must not wave a model through
        raise BuildError(f"refusing to build {ir.name}: {exc}") from None
    free = available_memory(device)
    if free is not None and need > free:
        gib = 1024**3
        raise BuildError(f"{ir.name} needs {need / gib:.1f} GiB for its weights in {dtype}, but "
                         f"only {free / gib:.1f} GiB of {device} memory is free; shrink it "
                         f"(`txdsl show` lists parameters by component) or use bfloat16")


def build(spec: Any, *, backend: str = "eager", output: Any = None, dtype: str = "float32",
          device: str = "cpu", weights: str | os.PathLike | None = None, seed: int = 0,
          model: str | None = None, force_kernels: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | Sequence[str] | BaseModel | None = None,
          progress: bool | Callable[[str], None] | None = None,
          registry: "Registry | None" = None, base_dir: str | os.PathLike | None = None,
          cache: Any = True, quantize: str | None = None) -> Built:
    """Build ``spec`` for ``backend`` and, given ``output``, write an artifact there.

    ``spec``: a ``.tx`` path, spec text (its imports resolve against
    ``base_dir``, default the current directory), or a :class:`ModelIR`;
    ``model`` picks one of several models in a file. ``output``: an artifact directory,
    or a function of the IR returning one. ``weights``: a safetensors file
    loaded strictly into the built model (otherwise it is initialised from
    ``seed``). ``force_kernels``: ``{"attention": "reference"}`` or
    ``{"attention.full": "sdpa"}``. ``options``: the backend's options (a
    mapping or ``key=value`` strings). ``quantize``: ``"int8-weight"`` or
    ``"int4-weight"`` (:mod:`txdsl.back.quantize`; the accuracy cost against
    float32 is measured and kept in ``Built.quantization`` and the manifest).
    ``progress``: ``None`` shows stages on a terminal, ``True``/``False`` force
    it, a callable gets each stage name.
    ``cache``: for a self-contained backend (``aot``, ``onnx``), reuse the
    compiled files of an identical earlier build (:mod:`txdsl.back.build_cache`;
    ``False`` rebuilds, a directory or a ``BuildCache`` picks the cache).

    Raises :class:`~txdsl.errors.SpecError` for mistakes in the spec and
    :class:`BuildError` (:class:`BackendError`, :class:`WeightsError`,
    :class:`ArtifactError`) for everything else.
    """
    import torch

    from .construct import construct
    from .select import select

    if registry is None:  # a public entry point: the installed plugins
        from ..plugins import get_registry

        registry = get_registry()
    chosen = get_backend(backend, registry)
    check_backend_conflict(backend, registry)
    opts = parse_options(chosen, options)
    target = make_target(device, dtype, backend)
    if quantize is not None:
        from .quantize import check_scheme

        check_scheme(quantize, device=target.device, backend=backend)
    check_available(chosen, target)
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
        raise BuildError(f"seed {seed!r} is not an integer from {SEED_MIN} to {SEED_MAX}")
    if weights is not None and not Path(weights).is_file():
        raise WeightsError(f"{weights}: no such weights file")
    if output is not None and not callable(output):
        check_destination(output)
    force = dict(force_kernels or {})
    stages = _Stages(progress)

    with stages("parse", "parsing the spec"):
        ir, spec_text, spec_path = _resolve(spec, model, registry, base_dir)
    if callable(output):
        output = check_destination(output(ir))

    with stages("select", "selecting kernels"):
        try:
            plan = select(ir, target, registry=registry, force=force)
        except ValueError as exc:  # a malformed force key
            if isinstance(exc, SpecError):
                raise
            raise BuildError(str(exc)) from None

    check_memory(ir, dtype, target.device, registry)
    with stages("construct", f"constructing {ir.name} (seed {seed})"):
        devices = [torch.device(device)] if target.device == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            module = construct(ir, plan, target=target, registry=registry, device=device,
                               dtype="float32" if quantize else dtype)
        if weights is not None:
            load_weights(module, weights)
        module.eval()
    reference = None
    if quantize is not None:
        with stages("quantize", f"quantizing the weights ({quantize})"):
            reference, module, stats = _quantized(module, quantize, dtype)

    # A self-contained backend's files must take every input a deployed model needs.
    self_contained = bool(getattr(chosen, "self_contained", False))
    example = example_inputs(ir, registry, batch=2, device=device, dtype=dtype, seed=seed,
                             full=self_contained)
    # Build options beyond the ones named in the key that change the result go here.
    build_options: dict[str, Any] = {"quantize": quantize} if quantize is not None else {}
    store = open_cache(cache) if self_contained else None
    key = keyed = lowered = None
    if store is not None:
        key, keyed = store.key(
            registry, ir_hash=ir.hash(), plan=plan.model_dump(mode="json"), backend=backend,
            options=opts.model_dump(mode="json"), dtype=dtype, device=target.device,
            cuda_capability=target.cuda_capability, seed=seed,
            weights_sha256=sha256_file(weights) if weights is not None else None,
            force_kernels=force, build_options=build_options,
            inputs=input_spec(example))
        entry = store.lookup(key)
        if entry is not None:
            with stages("lower", f"loading the cached {backend} build"):
                try:
                    lowered = chosen.load(entry, module, opts)
                except Exception as exc:  # a package torch can't load any more: rebuild
                    log.warning("build cache: %s: %s: %s; rebuilding", entry,
                                type(exc).__name__, exc)
    cached = lowered is not None
    if not cached:
        with stages("lower", f"lowering with {backend}"):
            try:
                lowered = chosen.lower(module, example, opts)
            except (BuildError, SpecError):
                raise
            except Exception as exc:
                raise BackendError(f"backend '{backend}' failed to lower {ir.name}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        if store is not None:
            try:
                store.store(key, keyed, chosen, lowered, getattr(lowered, "input_spec", None)
                            or input_spec(example))
            except OSError as exc:  # a cache that can't be written costs time, not the build
                log.warning("build cache: can't write %s: %s", store.path(key), exc)

    built = Built(ir=ir, plan=plan, module=module, lowered=lowered, backend=backend,
                  options=opts, target=target, example_inputs=example, registry=registry,
                  timings=stages.timings, cached=cached, cache_key=key)
    if reference is not None:
        with stages("measure", "measuring the accuracy cost against float32"):
            built.quantization = _cost(reference, built, stats, device, dtype)
        del reference
    if output is not None:
        with stages("write", f"writing the artifact to {output}"):
            built.artifact = write_artifact(
                output, module=module, lowered=lowered, backend=chosen, options=opts, ir=ir,
                plan=plan, dtype=dtype, device=target.device, seed=seed,
                inputs=getattr(lowered, "input_spec", None) or input_spec(example),
                spec_text=spec_text, spec_path=spec_path,
                weights_source=weights, registry=registry, quantization=built.quantization)
    return built


def _quantized(float_module: Any, scheme: str, dtype: str) -> tuple[Any, Any, dict]:
    """(the float32 reference, a quantized copy in ``dtype``, what was quantized)."""
    import copy

    import torch

    from .quantize import quantize_model

    torch_dtype = getattr(torch, dtype)
    module = copy.deepcopy(float_module)
    if torch_dtype != torch.float32:
        module.to(dtype=torch_dtype)
    stats = quantize_model(module, scheme, torch_dtype)
    return float_module, module.eval(), stats


def _cost(reference: Any, built: Built, stats: dict, device: str, dtype: str) -> Any:
    """The quantized build's outputs vs the float32 model's on the fixed input.

    Measured on the lowered build (an ``aot``/``onnx`` artifact is what ships), except for
    ``inductor``, which compiles per input shape at its first call: there the eager quantized
    module is measured (the same weights and operations; compiling the fixed input's shape
    only for this cost 12-24 s per GPT-2/BERT build, and the shape is never used again)."""
    from .quantize import accuracy, fixed_inputs, info_from

    inputs = fixed_inputs(built.ir, built.registry, device, dtype)
    ref_inputs = fixed_inputs(built.ir, built.registry, device, "float32")
    measured = built.module if built.backend == "inductor" else built.lowered
    try:
        cost = accuracy(reference, measured, inputs, ref_inputs)
    except Exception as exc:
        raise BackendError(f"the {stats['scheme']} build of {built.ir.name} failed to run on "
                           f"its fixed input: {type(exc).__name__}: {exc}") from exc
    return info_from(stats, cost, built.module)
